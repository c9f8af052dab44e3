//! Which addresses a URL connector may connect to (the SSRF guard of API.md §6).
//!
//! A connector fetches a URL a company typed in, from inside our network. Without a guard it
//! could read the instance metadata service (169.254.169.254), DynamoDB Local, or anything
//! else only reachable from here. So every host is resolved *before* connecting, and the
//! request goes only to an address that was checked: when any resolved address is loopback,
//! private, link-local, CGNAT, unspecified, broadcast, multicast, documentation or otherwise
//! not globally routable — or an IPv4-mapped, NAT64 or 6to4 form of one — the fetch is
//! refused, unless `EGRESS_ALLOWED_NETWORKS` (or its older name `DATASOURCE_ALLOWED_NETWORKS`)
//! lists the address. Notification channels go through the same guard. The caller pins the
//! connection to the checked address and checks every redirect the same way.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why an address may not be reached, for messages such as "resolves to 10.0.0.5, a private
/// address".
pub fn refusal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refusal_v4(v4),
        IpAddr::V6(v6) => refusal_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], len: u32) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], len: u32) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

fn refusal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    const RANGES: &[([u8; 4], u32, &str)] = &[
        ([0, 0, 0, 0], 8, "an unspecified (\"this network\") address"),
        ([10, 0, 0, 0], 8, "a private address"),
        ([100, 64, 0, 0], 10, "a shared (CGNAT) address"),
        ([127, 0, 0, 0], 8, "a loopback address"),
        ([169, 254, 0, 0], 16, "a link-local address"),
        ([172, 16, 0, 0], 12, "a private address"),
        ([192, 0, 0, 0], 24, "an IETF protocol address"),
        ([192, 0, 2, 0], 24, "a documentation address"),
        ([192, 168, 0, 0], 16, "a private address"),
        ([198, 18, 0, 0], 15, "a benchmarking address"),
        ([198, 51, 100, 0], 24, "a documentation address"),
        ([203, 0, 113, 0], 24, "a documentation address"),
        ([224, 0, 0, 0], 4, "a multicast address"),
        ([255, 255, 255, 255], 32, "the broadcast address"),
        ([240, 0, 0, 0], 4, "a reserved address"),
    ];
    RANGES
        .iter()
        .find(|(net, len, _)| in_v4(ip, *net, *len))
        .map(|(_, _, why)| *why)
}

fn refusal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    // Forms that carry an IPv4 address are judged by it: IPv4-mapped (::ffff:a.b.c.d),
    // IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::a.b.c.d) and 6to4 (2002:AABB:CCDD::).
    let bits = u128::from(ip);
    if in_v6(ip, [0, 0, 0, 0, 0, 0xffff, 0, 0], 96)
        || (in_v6(ip, [0; 8], 96) && bits > 1)
        || in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96)
    {
        return refusal_v4(Ipv4Addr::from(bits as u32));
    }
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        return refusal_v4(Ipv4Addr::from((bits >> 80) as u32));
    }
    const RANGES: &[([u16; 8], u32, &str)] = &[
        ([0, 0, 0, 0, 0, 0, 0, 0], 128, "the unspecified address"),
        ([0, 0, 0, 0, 0, 0, 0, 1], 128, "a loopback address"),
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "a discard-only address"),
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, "a Teredo tunnel address"),
        (
            [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
            32,
            "a documentation address",
        ),
        (
            [0xfc00, 0, 0, 0, 0, 0, 0, 0],
            7,
            "a private (unique local) address",
        ),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "a link-local address"),
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "a site-local address"),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "a multicast address"),
    ];
    RANGES
        .iter()
        .find(|(net, len, _)| in_v6(ip, *net, *len))
        .map(|(_, _, why)| *why)
}

/// True when `ip` is inside `network/len` (an IPv4 network also matches the IPv4-mapped
/// IPv6 form of its addresses).
pub fn in_network(ip: IpAddr, network: IpAddr, len: u8) -> bool {
    match (ip.to_canonical(), network.to_canonical()) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let len = u32::from(len).min(32);
            in_v4(ip, net.octets(), len)
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let len = u32::from(len).min(128);
            in_v6(ip, net.segments(), len)
        }
        _ => false,
    }
}

/// Checks one address against the rules and the allow-list; the error says why.
pub fn check(ip: IpAddr, allowed: &[(IpAddr, u8)]) -> Result<(), &'static str> {
    if allowed.iter().any(|(net, len)| in_network(ip, *net, *len)) {
        return Ok(());
    }
    refusal(ip).map_or(Ok(()), Err)
}

/// Checks every resolved address (one bad address is enough to refuse, so DNS answers that
/// mix a public and a private address cannot slip through) and answers the one to connect to.
pub fn pick(
    host: &str,
    addrs: &[SocketAddr],
    allowed: &[(IpAddr, u8)],
) -> Result<SocketAddr, String> {
    let first = addrs
        .first()
        .copied()
        .ok_or_else(|| format!("host '{host}' did not resolve to any address"))?;
    for addr in addrs {
        check(addr.ip(), allowed).map_err(|why| {
            format!(
                "refused: '{host}' resolves to {}, {why}; Pulseboard may not reach such addresses unless EGRESS_ALLOWED_NETWORKS (or DATASOURCE_ALLOWED_NETWORKS) lists them",
                addr.ip()
            )
        })?;
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refuses_what_is_not_public() {
        for bad in [
            "127.0.0.1",
            "127.1.2.3",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.10",
            "198.51.100.7",
            "203.0.113.9",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
        ] {
            assert!(refusal(ip(bad)).is_some(), "{bad} should be refused");
            assert!(check(ip(bad), &[]).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn lets_public_addresses_through() {
        for good in [
            "93.184.215.14",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "11.0.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(refusal(ip(good)), None, "{good} should pass");
        }
    }

    #[test]
    fn the_allow_list_wins() {
        let allowed = vec![
            (ip("127.0.0.1"), 32),
            (ip("10.0.0.0"), 8),
            (ip("fd00::"), 8),
        ];
        assert!(check(ip("127.0.0.1"), &allowed).is_ok());
        assert!(check(ip("::ffff:127.0.0.1"), &allowed).is_ok());
        assert!(check(ip("127.0.0.2"), &allowed).is_err());
        assert!(check(ip("10.200.3.4"), &allowed).is_ok());
        assert!(check(ip("fd12::1"), &allowed).is_ok());
        assert!(check(ip("169.254.169.254"), &allowed).is_err());
        assert!(check(ip("192.168.0.1"), &[(ip("0.0.0.0"), 0)]).is_ok());
    }

    #[test]
    fn one_bad_address_refuses_the_host() {
        let addrs: Vec<SocketAddr> = vec![
            "8.8.8.8:80".parse().unwrap(),
            "10.0.0.1:80".parse().unwrap(),
        ];
        let err = pick("mixed.example", &addrs, &[]).unwrap_err();
        assert!(err.contains("10.0.0.1") && err.contains("private"), "{err}");
        assert!(pick("none.example", &[], &[]).is_err());
        assert_eq!(pick("ok.example", &addrs[..1], &[]).unwrap(), addrs[0]);
    }
}
