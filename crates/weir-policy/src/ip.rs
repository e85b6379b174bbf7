//! IP rules: allow and deny lists of CIDRs (IPv4 and IPv6), per route (a policy) or per
//! listener. `deny` wins; a non-empty `allow` refuses everything it does not contain.

use std::net::IpAddr;

use weir_core::{ErrorKind, ProxyError, RequestCtx};

/// Compiled allow and deny lists.
#[derive(Debug, Clone, Default)]
pub struct IpRules {
    allow: Vec<ipnet::IpNet>,
    deny: Vec<ipnet::IpNet>,
}

impl IpRules {
    /// Compiles the config's lists.
    pub fn compile(cfg: &weir_config::IpRules) -> Self {
        Self {
            allow: cfg.allow.iter().map(|c| c.0).collect(),
            deny: cfg.deny.iter().map(|c| c.0).collect(),
        }
    }

    /// Whether `ip` (canonical: an IPv4-mapped address is IPv4) may pass.
    pub fn admits(&self, ip: IpAddr) -> bool {
        !self.deny.iter().any(|n| n.contains(&ip))
            && (self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&ip)))
    }

    pub(crate) fn check(&self, ctx: &RequestCtx) -> Result<(), ProxyError> {
        if self.admits(ctx.client_ip) {
            Ok(())
        } else {
            Err(ProxyError::new(ErrorKind::IpDenied))
        }
    }

    /// `ip: allow …, deny …`.
    pub fn describe(&self) -> String {
        format!("ip: allow {}, deny {}", list(&self.allow), list(&self.deny))
    }
}

fn list(nets: &[ipnet::IpNet]) -> String {
    if nets.is_empty() {
        return "-".to_owned();
    }
    nets.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

impl crate::kind::Compiles for weir_config::IpRules {
    type Kind = IpRules;
}

impl crate::kind::PolicyKind for IpRules {
    type Config = weir_config::IpRules;
    fn build(
        _: &str,
        cfg: &weir_config::IpRules,
        _: &weir_config::Config,
        _: &std::sync::Arc<crate::Shared>,
    ) -> Result<Self, crate::CompileError> {
        Ok(Self::compile(cfg))
    }

    async fn on_request(&self, r: crate::kind::Request<'_>) -> Result<(), crate::Early> {
        self.check(r.ctx).map_err(crate::Early::from)
    }

    fn summary(&self) -> String {
        self.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_wins_and_allow_restricts() {
        let cfg: weir_config::IpRules = weir_config::IpRules {
            allow: vec![
                "10.0.0.0/8".parse().expect("cidr"),
                "2001:db8::/32".parse().expect("cidr"),
            ],
            deny: vec!["10.1.0.0/16".parse().expect("cidr")],
        };
        let r = IpRules::compile(&cfg);
        assert!(r.admits("10.2.3.4".parse().expect("ip")));
        assert!(!r.admits("10.1.3.4".parse().expect("ip")));
        assert!(!r.admits("192.168.1.1".parse().expect("ip")));
        assert!(r.admits("2001:db8::1".parse().expect("ip")));
        assert!(!r.admits("2001:db9::1".parse().expect("ip")));
    }
}
