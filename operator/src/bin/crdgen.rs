//! Writes the operator's CRDs into `crds/` and the Helm chart's `crds/` folder, and the
//! vault alerts into the chart's `alerts/strongroom-alerts.yaml`.
//!
//! `cargo run -p strongroom-operator --bin crdgen` after changing a custom resource type;
//! the test `crds_are_current` fails until the committed YAML matches the Rust types.
//! `crdgen --stdout` prints them instead (e.g. `crdgen --stdout | kubectl apply -f -`).

use std::path::PathBuf;
use std::process::ExitCode;

use strongroom_operator::crd;
use strongroom_operator::piivault::builders::alerts;

fn main() -> ExitCode {
    let to_stdout = std::env::args().skip(1).any(|arg| arg == "--stdout");
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    for (file, crd) in crd::all() {
        let yaml = match crd::to_yaml(&crd) {
            Ok(yaml) => yaml,
            Err(error) => {
                eprintln!("crdgen: cannot render {file}: {error}");
                return ExitCode::FAILURE;
            }
        };
        if to_stdout {
            print!("{yaml}");
            continue;
        }
        for dir in crd::OUTPUT_DIRS {
            let path = workspace.join(dir).join(&file);
            if let Err(error) = std::fs::create_dir_all(workspace.join(dir)).and_then(|()| std::fs::write(&path, &yaml))
            {
                eprintln!("crdgen: cannot write {}: {error}", path.display());
                return ExitCode::FAILURE;
            }
            println!("wrote {}", path.display());
        }
    }
    if to_stdout {
        return ExitCode::SUCCESS;
    }
    // The vault alerts as a plain Prometheus rules file, for promtool and for a Prometheus
    // without the Prometheus Operator.
    let path = workspace.join(alerts::RULES_FILE);
    let written = alerts::rules_file().map_err(|error| error.to_string()).and_then(|yaml| {
        std::fs::create_dir_all(path.parent().unwrap_or(&workspace))
            .and_then(|()| std::fs::write(&path, yaml))
            .map_err(|error| error.to_string())
    });
    if let Err(error) = written {
        eprintln!("crdgen: cannot write {}: {error}", path.display());
        return ExitCode::FAILURE;
    }
    println!("wrote {}", path.display());
    ExitCode::SUCCESS
}
