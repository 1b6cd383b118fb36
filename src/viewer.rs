//! Who is viewing: a keyed, daily-rotating hash for viewers without a token,
//! the client network anonymous identities are bounded by, and the user agents
//! of known bots, whose views are not counted.

use std::cell::RefCell;
use std::net::IpAddr;

use hmac::Mac;

use crate::token::{HmacSha256, keyed, keyed_afresh};

/// The client network `ip` belongs to: the address itself for IPv4 (a /32),
/// its /64 for IPv6 (`2001:db8:1:2::/64`), since one IPv6 host commonly holds
/// a whole /64 and can rotate through it. An IPv4-mapped IPv6 address is its
/// IPv4 address; anything unparsable is taken as is.
pub fn network(ip: &str) -> String {
    match ip.trim().parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Err(_) => ip.to_owned(),
    }
}

/// A stable id for an anonymous viewer on one UTC day, from the network of
/// `ip` and `user_agent`.
///
/// The salt is derived from `secret` and the day number, so it rotates daily
/// without being stored anywhere, and no raw IP ever reaches Redis: the same
/// person gets a different id tomorrow and nobody can reverse today's.
pub fn anonymous_viewer(secret: &[u8], now: i64, ip: &str, user_agent: &str) -> String {
    format!(
        "v:{}",
        daily_hash(secret, now, &[network(ip).as_str(), user_agent])
    )
}

/// The rate-limit subject of a client without a token: its network, hashed
/// the same way, so the limiter's keys hold no raw IP either. It also carries
/// the network's hourly budget of visitor tokens.
pub fn anonymous_client(secret: &[u8], now: i64, ip: &str) -> String {
    format!("ip:{}", daily_hash(secret, now, &[network(ip).as_str()]))
}

/// The limiter that all the visitor tokens writing from the network of `ip`
/// share (a key apart from [`anonymous_client`]'s: another limit).
pub fn visitor_network(secret: &[u8], now: i64, ip: &str) -> String {
    format!("net:{}", daily_hash(secret, now, &[network(ip).as_str()]))
}

fn daily_hash(secret: &[u8], now: i64, parts: &[&str]) -> String {
    let mut id = salted(secret, now.div_euclid(86_400));
    for part in parts {
        id.update(part.as_bytes());
        id.update(b"\n");
    }
    let digest = id.finalize().into_bytes();
    let mut hex = String::with_capacity(32);
    for byte in &digest[..16] {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 15)]));
    }
    hex
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// HMAC-SHA256 keyed with the salt of `day`, itself derived from `secret`.
/// A request hashes up to three ids with the same day's salt, and every
/// request of the day the same: the keyed state is kept per (secret, day).
fn salted(secret: &[u8], day: i64) -> HmacSha256 {
    thread_local! {
        static LAST: RefCell<Option<(Vec<u8>, i64, HmacSha256)>> = const { RefCell::new(None) };
    }
    LAST.with(|last| {
        if let Some((key, salt_day, mac)) = &*last.borrow()
            && *salt_day == day
            && key.as_slice() == secret
        {
            return mac.clone();
        }
        let mut salt = keyed(secret);
        salt.update(format!("tally viewer salt {day}").as_bytes());
        let mac = keyed_afresh(&salt.finalize().into_bytes());
        *last.borrow_mut() = Some((secret.to_vec(), day, mac.clone()));
        mac
    })
}

/// Lower-case fragments of the user agents of crawlers, preview fetchers and
/// monitors: their views are answered but never counted.
const BOT_MARKERS: &[&str] = &[
    "bot",
    "crawl",
    "spider",
    "slurp",
    "facebookexternalhit",
    "mediapartners-google",
    "bingpreview",
    "embedly",
    "pingdom",
    "uptimerobot",
    "lighthouse",
];

/// Whether `user_agent` belongs to a known bot.
pub fn is_bot(user_agent: &str) -> bool {
    let ua = user_agent.to_ascii_lowercase();
    BOT_MARKERS.iter().any(|marker| ua.contains(marker))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;
    const MONDAY: i64 = 1_800_000_000 - 1_800_000_000 % DAY;

    #[test]
    fn the_same_viewer_gets_the_same_id_all_day() {
        let morning = anonymous_viewer(b"s", MONDAY + 60, "203.0.113.9", "Firefox");
        let evening = anonymous_viewer(b"s", MONDAY + DAY - 1, "203.0.113.9", "Firefox");
        assert_eq!(morning, evening);
    }

    #[test]
    fn ids_are_the_keyed_hash_of_the_day_whatever_was_hashed_before() {
        // HMAC(HMAC(secret, "tally viewer salt {day}"), parts each + "\n"),
        // its first 16 bytes in hex (computed apart, with Python's hmac);
        // the secrets and days alternate, so a kept salt must not leak over.
        let firefox = |secret: &[u8], now| anonymous_viewer(secret, now, "203.0.113.9", "Firefox");
        for _ in 0..2 {
            assert_eq!(
                firefox(b"s", MONDAY + 60),
                "v:cab02eb73f224f724b2e4d3f793cdb47"
            );
            assert_eq!(
                firefox(b"t", MONDAY + 60),
                "v:63500f20ced70cb831e0c94e3e397759"
            );
            assert_eq!(
                firefox(b"s", MONDAY + DAY),
                "v:f06fbe9ff9ff32536842c8634d8d7e4d"
            );
            assert_eq!(
                anonymous_client(b"s", MONDAY + 60, "203.0.113.9"),
                "ip:a4feb30e1393bce9b3a17c2737ccb42a"
            );
        }
    }

    #[test]
    fn the_id_rotates_at_midnight_utc() {
        let today = anonymous_viewer(b"s", MONDAY, "203.0.113.9", "Firefox");
        let tomorrow = anonymous_viewer(b"s", MONDAY + DAY, "203.0.113.9", "Firefox");
        assert_ne!(today, tomorrow);
    }

    #[test]
    fn the_id_depends_on_ip_user_agent_and_secret() {
        let base = anonymous_viewer(b"s", MONDAY, "203.0.113.9", "Firefox");
        assert_ne!(
            base,
            anonymous_viewer(b"s", MONDAY, "203.0.113.10", "Firefox")
        );
        assert_ne!(
            base,
            anonymous_viewer(b"s", MONDAY, "203.0.113.9", "Chrome")
        );
        assert_ne!(
            base,
            anonymous_viewer(b"t", MONDAY, "203.0.113.9", "Firefox")
        );
    }

    #[test]
    fn the_id_never_contains_the_ip() {
        let id = anonymous_viewer(b"s", MONDAY, "203.0.113.9", "Firefox");
        assert!(!id.contains("203.0.113.9"));
        assert_eq!(id.len(), 2 + 32);
    }

    #[test]
    fn a_client_key_hides_the_ip_and_differs_from_the_viewer_id() {
        let client = anonymous_client(b"s", MONDAY, "203.0.113.9");
        assert!(client.starts_with("ip:") && !client.contains("203.0.113.9"));
        assert_ne!(client, anonymous_client(b"s", MONDAY, "203.0.113.10"));
        assert_ne!(client, anonymous_client(b"s", MONDAY + DAY, "203.0.113.9"));
    }

    #[test]
    fn an_ipv4_network_is_the_address_and_an_ipv6_network_its_64() {
        assert_eq!(network("203.0.113.9"), "203.0.113.9");
        assert_eq!(network("::ffff:203.0.113.9"), "203.0.113.9");
        assert_eq!(network("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(
            network("2001:0db8:0001:0002:ffff:ffff:ffff:ffff"),
            "2001:db8:1:2::/64"
        );
        assert_eq!(network("unknown"), "unknown");
    }

    #[test]
    fn addresses_of_one_ipv6_64_are_one_viewer_and_one_client() {
        let a = "2001:db8:1:2::1";
        let b = "2001:db8:1:2:dead:beef:0:7";
        assert_eq!(
            anonymous_viewer(b"s", MONDAY, a, "Firefox"),
            anonymous_viewer(b"s", MONDAY, b, "Firefox")
        );
        assert_eq!(
            anonymous_client(b"s", MONDAY, a),
            anonymous_client(b"s", MONDAY, b)
        );
        assert_ne!(
            anonymous_client(b"s", MONDAY, a),
            anonymous_client(b"s", MONDAY, "2001:db8:1:3::1")
        );
        assert!(visitor_network(b"s", MONDAY, a).starts_with("net:"));
    }

    #[test]
    fn recognises_common_crawlers_but_not_browsers() {
        assert!(is_bot(
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
        ));
        assert!(is_bot("facebookexternalhit/1.1"));
        assert!(is_bot("Mozilla/5.0 (compatible; bingbot/2.0)"));
        assert!(!is_bot(
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
        ));
        assert!(!is_bot(""));
    }
}
