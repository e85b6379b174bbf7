//! Endpoint discovery: where an upstream's endpoints come from besides its static list — DNS
//! (A/AAAA on their TTL, or SRV), an etcd v3 key prefix (watched), or a watched file.

use serde::{Deserialize, Serialize};

use super::UpstreamTls;
use crate::secret::Secret;
use crate::units::Duration;

/// An upstream's endpoint provider (`[upstreams.discovery]`): exactly one of `dns`, `etcd`
/// and `file`. Its endpoints join the static `endpoints`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Discovery {
    /// DNS: A/AAAA records of a name, or SRV records.
    #[serde(default)]
    pub dns: Option<DnsDiscovery>,
    /// etcd v3: every key under a prefix is one endpoint.
    #[serde(default)]
    pub etcd: Option<EtcdDiscovery>,
    /// A JSON or TOML file of endpoints, re-read when it changes.
    #[serde(default)]
    pub file: Option<FileDiscovery>,
    /// An answer with no endpoints (no records, an empty prefix, an empty file) empties the
    /// provider's share of the set only once it has lasted this long. Lookup *errors* never
    /// empty it: the last good set stays.
    #[serde(default = "defaults::empty_grace")]
    pub empty_grace: Duration,
}

impl Discovery {
    /// The provider's name: `dns`, `etcd` or `file` (the first set).
    pub fn provider(&self) -> &'static str {
        if self.dns.is_some() {
            "dns"
        } else if self.etcd.is_some() {
            "etcd"
        } else {
            "file"
        }
    }
}

/// DNS discovery, through hickory-resolver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsDiscovery {
    /// `HOST:PORT`: every A and AAAA address of HOST, at PORT, weight 1.
    #[serde(default)]
    pub name: Option<String>,
    /// An SRV record name (RFC 2782), e.g. `_http._tcp.api.default.svc.cluster.local`:
    /// targets resolved to addresses, ports and weights from the records, and only the lowest
    /// priority with an endpoint in service takes traffic.
    #[serde(default)]
    pub srv: Option<String>,
    /// `IP:PORT` (or `IP`, port 53) of the resolver; default the system's (`/etc/resolv.conf`).
    #[serde(default)]
    pub resolver: Option<String>,
    /// Shortest time between lookups, whatever the records' TTL says.
    #[serde(default = "defaults::min_ttl")]
    pub min_ttl: Duration,
    /// Longest time between lookups.
    #[serde(default = "defaults::max_ttl")]
    pub max_ttl: Duration,
    /// A lookup that takes longer fails (and is retried after `min_ttl`, at least 1 s).
    #[serde(default = "defaults::dns_timeout")]
    pub timeout: Duration,
}

/// etcd v3 discovery (the registry pattern): each key under `prefix` holds
/// `{"address": "HOST:PORT", "weight": N, "metadata": {...}}`, usually under a lease so it
/// vanishes with the service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdDiscovery {
    /// etcd members' client URLs, e.g. `["http://10.0.0.1:2379"]`; tried in turn.
    pub endpoints: Vec<String>,
    /// The key prefix read and watched, e.g. `"/services/api/"`.
    pub prefix: String,
    /// User name, when etcd has authentication on.
    #[serde(default)]
    pub username: Option<String>,
    /// Its password (a secret: `"${ETCD_PASSWORD}"` or `{ file = "..." }`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// TLS to etcd (`https://` URLs): CA, client certificate and key.
    #[serde(default)]
    pub tls: Option<UpstreamTls>,
    /// Connecting and each non-watch call time out after this.
    #[serde(default = "defaults::etcd_timeout")]
    pub timeout: Duration,
}

/// File discovery, Prometheus `file_sd` style.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDiscovery {
    /// The file: `.json` (an array of `"HOST:PORT"` or `{"address", "weight"}`, or an object
    /// with such an `endpoints` array) or `.toml` (`endpoints = [...]`).
    pub path: std::path::PathBuf,
    /// How often the file is checked for a change.
    #[serde(default = "defaults::file_interval")]
    pub interval: Duration,
}

mod defaults {
    use crate::units::Duration;
    pub fn empty_grace() -> Duration {
        Duration::from_secs(30)
    }
    pub fn min_ttl() -> Duration {
        Duration::from_secs(1)
    }
    pub fn max_ttl() -> Duration {
        Duration::from_secs(300)
    }
    pub fn dns_timeout() -> Duration {
        Duration::from_secs(2)
    }
    pub fn etcd_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn file_interval() -> Duration {
        Duration::from_secs(1)
    }
}
