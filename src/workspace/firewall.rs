//! The allow-list a workspace applies when it accepts a connection.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::error::{Error, Result};

/// CIDRs allowed to connect; empty allows whoever can reach the address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Firewall {
    allow: Vec<IpNet>,
}

impl Firewall {
    /// Parses every rule (`10.0.0.0/8`, `127.0.0.1`, `::1/128`).
    pub fn new<'a>(rules: impl IntoIterator<Item = &'a String>) -> Result<Firewall> {
        let allow = rules
            .into_iter()
            .map(|r| parse_rule(r))
            .collect::<Result<Vec<_>>>()?;
        Ok(Firewall { allow })
    }

    /// Whether a client at `ip` may connect.
    pub fn admits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.allow.is_empty() || self.allow.iter().any(|net| net.contains(&ip))
    }

    /// The rules as written back (normalised).
    pub fn rules(&self) -> Vec<String> {
        self.allow.iter().map(ToString::to_string).collect()
    }

    pub fn is_open(&self) -> bool {
        self.allow.is_empty()
    }
}

/// A CIDR or a single address (which allows exactly that address),
/// normalised (`10.1.2.3/8` becomes `10.0.0.0/8`).
pub fn parse_rule(text: &str) -> Result<IpNet> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    Err(Error::invalid(format!(
        "`{text}` is not a CIDR; write it like 10.0.0.0/8, 192.168.1.7 or ::1/128"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_admit_what_they_cover() {
        let rules = vec!["127.0.0.1".to_string(), "10.0.0.0/8".to_string()];
        let fw = Firewall::new(&rules).expect("rules");
        assert!(fw.admits("127.0.0.1".parse().expect("ip")));
        assert!(!fw.admits("127.0.0.2".parse().expect("ip")));
        assert!(fw.admits("10.200.0.1".parse().expect("ip")));
        assert!(fw.admits("::ffff:10.0.0.1".parse().expect("ip")));
        assert!(Firewall::default().admits("8.8.8.8".parse().expect("ip")));
        assert_eq!(
            parse_rule("10.1.2.3/8").expect("rule").to_string(),
            "10.0.0.0/8"
        );
        assert!(parse_rule("10.0.0.0/33").is_err());
    }
}
