//! Rate limits on the traffic that costs the vault work without any proof of who sends
//! it — requests to the routes that take no token, and failed authentications, both per
//! client address — and on subject tokens, per token: those are handed to the people
//! themselves (a privacy portal), and each request is a log entry and an audit event.
//! The client address is the TCP peer's (a forwarding header could be set by anyone), an
//! IPv6 one by its /64. Over a limit the answer is 429 with `Retry-After`. A client over its failed-authentication limit gets no read barrier for
//! a token unknown here until the limit refills: further guesses cost no cluster work,
//! while valid tokens from the same address (say, behind one ingress) still work.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::{ready, Ready};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::VaultError;

/// How often addresses whose limits have refilled are dropped from memory.
pub const FORGET_EVERY: Duration = Duration::from_secs(60);

/// The limits, per client address and minute; 0 is no limit.
#[derive(Clone, Copy, Debug)]
pub struct ThrottleSettings {
    pub anonymous_per_minute: u32,
    pub failed_auth_per_minute: u32,
    pub subject_token_per_minute: u32,
}

/// The API's limiters; app data of the API.
pub struct Throttle {
    anonymous: Option<DefaultKeyedRateLimiter<IpAddr>>,
    failed_auth: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// By token id.
    subject_tokens: Option<DefaultKeyedRateLimiter<String>>,
    /// Clients over their failed-authentication limit, and when it lets them in again.
    refused_until: RwLock<HashMap<IpAddr, Instant>>,
}

fn limiter<K: std::hash::Hash + Eq + Clone>(per_minute: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
}

/// Counts one event for `client`; past the limit, how long until it is allowed again.
fn count<K: std::hash::Hash + Eq + Clone>(
    limiter: Option<&DefaultKeyedRateLimiter<K>>,
    key: &K,
) -> Result<(), Duration> {
    let Some(limiter) = limiter else { return Ok(()) };
    limiter.check_key(key).map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
}

fn too_many(wait: Duration) -> VaultError {
    VaultError::TooManyRequests { retry_after_secs: wait.as_secs() + 1 }
}

impl Throttle {
    pub fn new(settings: ThrottleSettings) -> Self {
        Throttle {
            anonymous: limiter(settings.anonymous_per_minute),
            failed_auth: limiter(settings.failed_auth_per_minute),
            subject_tokens: limiter(settings.subject_token_per_minute),
            refused_until: RwLock::default(),
        }
    }

    /// Counts a request without a token to a route that takes none.
    pub fn anonymous(&self, client: Option<IpAddr>) -> Result<(), VaultError> {
        let Some(client) = client else { return Ok(()) };
        count(self.anonymous.as_ref(), &client).map_err(too_many)
    }

    /// Counts a request made with a subject token (by its id).
    pub fn subject_token(&self, token_id: &str) -> Result<(), VaultError> {
        let Some(limiter) = &self.subject_tokens else { return Ok(()) };
        count(Some(limiter), &token_id.to_string()).map_err(too_many)
    }

    /// Refuses a client that is over its failed-authentication limit.
    pub fn before_auth(&self, client: Option<IpAddr>) -> Result<(), VaultError> {
        let Some(client) = client else { return Ok(()) };
        let refused = self.refused_until.read().map_err(|_| VaultError::Unavailable("rate limiter"))?;
        match refused.get(&client).and_then(|until| until.checked_duration_since(Instant::now())) {
            Some(wait) => Err(too_many(wait)),
            None => Ok(()),
        }
    }

    /// Counts a failed authentication (the presented secret itself is not kept); past
    /// the limit, the client is refused until it refills.
    pub fn failed_auth(&self, client: Option<IpAddr>) -> Result<(), VaultError> {
        let Some(client) = client else { return Ok(()) };
        count(self.failed_auth.as_ref(), &client).map_err(|wait| {
            if let Ok(mut refused) = self.refused_until.write() {
                refused.insert(client, Instant::now() + wait);
            }
            too_many(wait)
        })
    }

    /// Drops the addresses whose limits have refilled, so that memory follows the
    /// addresses seen lately rather than all ever seen.
    pub fn forget_idle(&self) {
        for limiter in [&self.anonymous, &self.failed_auth].into_iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.subject_tokens {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Ok(mut refused) = self.refused_until.write() {
            let now = Instant::now();
            refused.retain(|_, until| *until > now);
        }
    }
}

/// The address a request came from, for the limits.
pub fn client_of(req: &HttpRequest) -> Option<IpAddr> {
    req.peer_addr().map(|address| client_key(address.ip()))
}

/// What the limits count by: an IPv4 address, or an IPv6 /64 (one host commonly holds a
/// whole /64, and could otherwise pick a fresh address for every request).
fn client_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
        },
    }
}

/// An extractor for the routes that take no token: counts the request against its
/// address's limit, before anything else about the request is read.
pub struct Anonymous;

impl FromRequest for Anonymous {
    type Error = VaultError;
    type Future = Ready<Result<Anonymous, VaultError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(match req.app_data::<web::Data<Throttle>>() {
            Some(throttle) => throttle.anonymous(client_of(req)).map(|()| Anonymous),
            None => Ok(Anonymous),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_has_its_own_allowance_and_zero_is_no_limit() {
        let throttle = Throttle::new(ThrottleSettings {
            anonymous_per_minute: 2,
            failed_auth_per_minute: 0,
            subject_token_per_minute: 1,
        });
        let (a, b) = (Some(IpAddr::from([10, 0, 0, 1])), Some(IpAddr::from([10, 0, 0, 2])));
        assert!(throttle.anonymous(a).is_ok() && throttle.anonymous(a).is_ok());
        match throttle.anonymous(a) {
            Err(VaultError::TooManyRequests { retry_after_secs }) => assert!(retry_after_secs >= 1),
            other => panic!("{other:?}"),
        }
        assert!(throttle.anonymous(b).is_ok());
        assert!((0..100).all(|_| throttle.failed_auth(a).is_ok()));
        assert!(throttle.before_auth(a).is_ok());
        assert!(throttle.subject_token("t1").is_ok() && throttle.subject_token("t2").is_ok());
        assert!(matches!(throttle.subject_token("t1"), Err(VaultError::TooManyRequests { .. })));
        throttle.forget_idle();
    }

    #[test]
    fn a_client_over_its_failed_auth_limit_stays_refused_until_it_refills() {
        let throttle = Throttle::new(ThrottleSettings {
            anonymous_per_minute: 0,
            failed_auth_per_minute: 1,
            subject_token_per_minute: 0,
        });
        let (a, b) = (Some(IpAddr::from([10, 0, 0, 1])), Some(IpAddr::from([10, 0, 0, 2])));
        assert!(throttle.failed_auth(a).is_ok());
        assert!(throttle.before_auth(a).is_ok(), "one failure is within the limit");
        assert!(matches!(throttle.failed_auth(a), Err(VaultError::TooManyRequests { .. })));
        match throttle.before_auth(a) {
            Err(VaultError::TooManyRequests { retry_after_secs }) => assert!(retry_after_secs >= 1),
            other => panic!("{other:?}"),
        }
        assert!(throttle.before_auth(b).is_ok());
        throttle.forget_idle();
        assert!(throttle.before_auth(a).is_err(), "still refused until the limit refills");
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_bit_prefix() {
        let key = |text: &str| client_key(text.parse().unwrap()).to_string();
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2:bbbb::9"), "2001:db8:1:2::");
        assert_eq!(key("::ffff:10.0.0.1"), "10.0.0.1");
        assert_eq!(key("10.0.0.1"), "10.0.0.1");
    }
}
