//! Per-client-address rate limits on the traffic that costs the vault work without any
//! proof of who sends it: requests to the routes that take no token, and failed
//! authentications. The client address is the TCP peer's (a forwarding header could be
//! set by anyone), an IPv6 one by its /64. Over a limit the answer is 429 with
//! `Retry-After`.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::time::Duration;

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
}

/// The API's limiters; app data of the API.
pub struct Throttle {
    anonymous: Option<DefaultKeyedRateLimiter<IpAddr>>,
    failed_auth: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

fn limiter(per_minute: u32) -> Option<DefaultKeyedRateLimiter<IpAddr>> {
    NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
}

/// Counts one event for `client`; past the limit, the error says when to come back.
fn count(limiter: Option<&DefaultKeyedRateLimiter<IpAddr>>, client: Option<IpAddr>) -> Result<(), VaultError> {
    let (Some(limiter), Some(client)) = (limiter, client) else { return Ok(()) };
    limiter.check_key(&client).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        VaultError::TooManyRequests { retry_after_secs: wait.as_secs() + 1 }
    })
}

impl Throttle {
    pub fn new(settings: ThrottleSettings) -> Self {
        Throttle {
            anonymous: limiter(settings.anonymous_per_minute),
            failed_auth: limiter(settings.failed_auth_per_minute),
        }
    }

    /// Counts a request without a token to a route that takes none.
    pub fn anonymous(&self, client: Option<IpAddr>) -> Result<(), VaultError> {
        count(self.anonymous.as_ref(), client)
    }

    /// Counts a failed authentication (the presented secret itself is not kept).
    pub fn failed_auth(&self, client: Option<IpAddr>) -> Result<(), VaultError> {
        count(self.failed_auth.as_ref(), client)
    }

    /// Drops the addresses whose limits have refilled, so that memory follows the
    /// addresses seen lately rather than all ever seen.
    pub fn forget_idle(&self) {
        for limiter in [&self.anonymous, &self.failed_auth].into_iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
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
        let throttle = Throttle::new(ThrottleSettings { anonymous_per_minute: 2, failed_auth_per_minute: 0 });
        let (a, b) = (Some(IpAddr::from([10, 0, 0, 1])), Some(IpAddr::from([10, 0, 0, 2])));
        assert!(throttle.anonymous(a).is_ok() && throttle.anonymous(a).is_ok());
        match throttle.anonymous(a) {
            Err(VaultError::TooManyRequests { retry_after_secs }) => assert!(retry_after_secs >= 1),
            other => panic!("{other:?}"),
        }
        assert!(throttle.anonymous(b).is_ok());
        assert!((0..100).all(|_| throttle.failed_auth(a).is_ok()));
        throttle.forget_idle();
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
