"""Schemathesis hooks for the vault's API (loaded through hack/schemathesis.toml)."""

import uuid

import schemathesis

# A token that names no subject: lookups with it are 404, as for any unknown identifier.
UNKNOWN_TOKEN = "00000000-0000-4000-8000-000000000000"


@schemathesis.hook
def before_call(ctx, case, kwargs):
    """`{mode}/{id}` with mode `token` takes a UUID as `id` (400 otherwise), a constraint
    between two parameters that OpenAPI cannot state. Such requests get a well-formed
    token, so they test the operation rather than that one rule (tests/api.rs covers
    it). Runs before every call, in every phase."""
    parameters = case.path_parameters
    if parameters and parameters.get("mode") == "token":
        try:
            uuid.UUID(str(parameters.get("id")))
        except ValueError:
            parameters["id"] = UNKNOWN_TOKEN
