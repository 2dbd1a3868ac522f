//! The federation's configuration: regions, policies, flavors, companies, users, spaces.
//!
//! Owns: the plain-data description of a federation (JSON via serde), the default demo
//! federation, and the consistency checks run before anything binds a port. Must never do
//! IO, and must never re-implement a policy rule: the policies are `meridian` types.

use std::collections::HashSet;
use std::path::PathBuf;

use meridian::model::{
    CompanyId, Flavor, FlavorId, GeoPolicy, PolicyId, PolicyMode, RegionId, Residency,
    RolloutState, SpaceId, UserId,
};
use serde::{Deserialize, Serialize};

use crate::DevserverError;

/// Prefix reserved for DM spaces created at runtime (`dm:<a>:<b>`).
pub const DM_PREFIX: &str = "dm:";

/// A whole federation: what the directory publishes and what the regions enforce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederationConfig {
    /// The port of the directory (HTTP) on 127.0.0.1; `None` picks a free one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory_port: Option<u16>,
    /// The regions, each served on its own port.
    pub regions: Vec<RegionConfig>,
    /// The geographic policies.
    pub policies: Vec<GeoPolicy>,
    /// The flavors.
    #[serde(default)]
    pub flavors: Vec<Flavor>,
    /// The companies (tenants).
    pub companies: Vec<CompanyConfig>,
    /// The users, with their bearer tokens.
    pub users: Vec<UserConfig>,
    /// The channels, housed in their owning company's home region.
    #[serde(default)]
    pub spaces: Vec<SpaceConfig>,
    /// Where the regions persist their messages, idempotency keys, DMs and history epoch
    /// (one append-only JSON-lines file per region); `None` keeps everything in memory.
    /// A federation started again on the same directory, with the same config, resumes
    /// where the previous one stopped (even if that process was killed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
}

/// One region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionConfig {
    /// The region's id, e.g. `eu-west`.
    pub id: RegionId,
    /// A human name, e.g. "Europe (Ireland)".
    pub name: String,
    /// The port on 127.0.0.1; `None` picks a free one (kept across restarts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The retention window: the region keeps at most this many newest messages per
    /// space and drops older ones as new ones are stored. `None` keeps every message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<usize>,
}

/// One company (tenant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompanyConfig {
    /// The company's id.
    pub id: CompanyId,
    /// Its name.
    pub name: String,
    /// Its home region: where its spaces are housed.
    pub home_region: RegionId,
    /// Its geographic policy.
    pub policy: PolicyId,
    /// The flavor its users are assigned to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavor: Option<FlavorId>,
}

/// One user.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserConfig {
    /// The user's id.
    pub id: UserId,
    /// Their display name.
    pub display_name: String,
    /// Their company.
    pub company: CompanyId,
    /// Their bearer token (never logged: `Debug` redacts it).
    pub token: String,
    /// A per-user flavor override (e.g. a beta tester).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavor_override: Option<FlavorId>,
}

impl std::fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserConfig")
            .field("id", &self.id)
            .field("display_name", &self.display_name)
            .field("company", &self.company)
            .field("token", &"<redacted>")
            .field("flavor_override", &self.flavor_override)
            .finish()
    }
}

/// One channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceConfig {
    /// The space's id (must not start with `dm:`, which is reserved for DMs).
    pub id: SpaceId,
    /// Its name.
    pub name: String,
    /// The owning company (the space is housed in its home region).
    pub company: CompanyId,
}

fn r(id: &str) -> RegionId {
    RegionId::new_unchecked(id)
}

impl FederationConfig {
    /// The demo federation: three regions, three companies with three different
    /// policies, six users (token `<id>-token`) and four channels. Ports are left to the
    /// OS (see [`FederationConfig::with_fixed_ports`]).
    pub fn default_three_regions() -> Self {
        let region = |id: &str, name: &str| RegionConfig {
            id: r(id),
            name: name.into(),
            port: None,
            retention: None,
        };
        let policy = |id: &str, mode, residency| GeoPolicy {
            id: PolicyId::new_unchecked(id),
            mode,
            residency,
        };
        let flavor = |id: &str, regions: &[&str], rollout| Flavor {
            id: FlavorId::new_unchecked(id),
            regions: regions.iter().map(|x| r(x)).collect(),
            rollout,
        };
        let company =
            |id: &str, name: &str, home: &str, policy: &str, flavor: &str| CompanyConfig {
                id: CompanyId::new_unchecked(id),
                name: name.into(),
                home_region: r(home),
                policy: PolicyId::new_unchecked(policy),
                flavor: Some(FlavorId::new_unchecked(flavor)),
            };
        let user = |id: &str, name: &str, company: &str, over: Option<&str>| UserConfig {
            id: UserId::new_unchecked(id),
            display_name: name.into(),
            company: CompanyId::new_unchecked(company),
            token: format!("{id}-token"),
            flavor_override: over.map(FlavorId::new_unchecked),
        };
        let space = |id: &str, name: &str, company: &str| SpaceConfig {
            id: SpaceId::new_unchecked(id),
            name: name.into(),
            company: CompanyId::new_unchecked(company),
        };
        Self {
            directory_port: None,
            regions: vec![
                region("eu-west", "Europe (Ireland)"),
                region("us-east", "US East (Virginia)"),
                region("ca-central", "Canada (Montréal)"),
            ],
            policies: vec![
                policy("eu-strict", PolicyMode::Strict, Residency::Dr),
                policy(
                    "us-open",
                    PolicyMode::Whitelist {
                        regions: vec![r("eu-west"), r("ca-central")],
                    },
                    Residency::Dr,
                ),
                policy(
                    "ca-na",
                    PolicyMode::Whitelist {
                        regions: vec![r("us-east")],
                    },
                    Residency::Ds,
                ),
            ],
            flavors: vec![
                flavor("eu", &["eu-west"], RolloutState::Ga),
                flavor("na", &["us-east", "ca-central"], RolloutState::Ga),
                flavor("ca-beta", &["ca-central"], RolloutState::Beta),
            ],
            companies: vec![
                company("acme", "Acme", "eu-west", "eu-strict", "eu"),
                company("globex", "Globex", "us-east", "us-open", "na"),
                company("maple", "Maple", "ca-central", "ca-na", "na"),
            ],
            users: vec![
                user("ana", "Ana", "acme", None),
                user("ben", "Ben", "acme", None),
                user("sam", "Sam", "globex", None),
                user("tom", "Tom", "globex", None),
                user("chloe", "Chloé", "maple", None),
                user("leo", "Léo", "maple", Some("ca-beta")),
            ],
            spaces: vec![
                space("acme:general", "general", "acme"),
                space("globex:launch", "launch", "globex"),
                space("globex:random", "random", "globex"),
                space("maple:lounge", "lounge", "maple"),
            ],
            data_dir: None,
        }
    }

    /// The same federation persisting its regions' state under `dir` (see
    /// [`FederationConfig::data_dir`]).
    pub fn with_data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// The same federation with every region keeping at most `retention` messages per
    /// space (see [`RegionConfig::retention`]).
    pub fn with_retention(mut self, retention: Option<usize>) -> Self {
        for region in &mut self.regions {
            region.retention = retention;
        }
        self
    }

    /// The same federation with the directory on `base` and the regions on `base + 1`,
    /// `base + 2`, ... in the order they are listed (the binary uses 7700).
    pub fn with_fixed_ports(mut self, base: u16) -> Self {
        self.directory_port = Some(base);
        for (i, region) in self.regions.iter_mut().enumerate() {
            region.port = u16::try_from(i + 1)
                .ok()
                .and_then(|offset| base.checked_add(offset));
        }
        self
    }

    /// The same federation with every port left to the OS.
    pub fn with_ephemeral_ports(mut self) -> Self {
        self.directory_port = None;
        for region in &mut self.regions {
            region.port = None;
        }
        self
    }

    /// Checks that the configuration is consistent: ids unique, every reference resolves,
    /// tokens unique and non-empty, no channel id in the DM namespace, and the federation
    /// document it produces passes [`meridian::model::FederationDoc::validate`].
    pub fn validate(&self) -> Result<(), DevserverError> {
        let bad = |why: String| Err(DevserverError::InvalidConfig(why));
        if self.regions.is_empty() {
            return bad("no regions".into());
        }
        fn unique<'a, T: std::hash::Hash + Eq + std::fmt::Display + 'a>(
            kind: &str,
            ids: impl Iterator<Item = &'a T>,
        ) -> Result<HashSet<&'a T>, DevserverError> {
            let mut seen = HashSet::new();
            for id in ids {
                if !seen.insert(id) {
                    return Err(DevserverError::InvalidConfig(format!(
                        "{kind} {id} is listed twice"
                    )));
                }
            }
            Ok(seen)
        }
        let regions = unique("region", self.regions.iter().map(|x| &x.id))?;
        let policies = unique("policy", self.policies.iter().map(|x| &x.id))?;
        let flavors = unique("flavor", self.flavors.iter().map(|x| &x.id))?;
        let companies = unique("company", self.companies.iter().map(|x| &x.id))?;
        unique("user", self.users.iter().map(|x| &x.id))?;
        unique("space", self.spaces.iter().map(|x| &x.id))?;

        let mut ports = HashSet::new();
        for port in self
            .regions
            .iter()
            .filter_map(|x| x.port)
            .chain(self.directory_port)
            .filter(|p| *p != 0)
        {
            if !ports.insert(port) {
                return bad(format!("port {port} is used twice"));
            }
        }
        for p in &self.policies {
            if let PolicyMode::Whitelist { regions: list } = &p.mode
                && let Some(x) = list.iter().find(|x| !regions.contains(x))
            {
                return bad(format!("policy {} names unknown region {x}", p.id));
            }
        }
        for f in &self.flavors {
            if let Some(x) = f.regions.iter().find(|x| !regions.contains(x)) {
                return bad(format!("flavor {} names unknown region {x}", f.id));
            }
        }
        for c in &self.companies {
            if !regions.contains(&c.home_region) {
                return bad(format!(
                    "company {} is homed in unknown region {}",
                    c.id, c.home_region
                ));
            }
            if !policies.contains(&c.policy) {
                return bad(format!(
                    "company {} names unknown policy {}",
                    c.id, c.policy
                ));
            }
            if let Some(f) = &c.flavor
                && !flavors.contains(f)
            {
                return bad(format!("company {} names unknown flavor {f}", c.id));
            }
        }
        let mut tokens = HashSet::new();
        for u in &self.users {
            if !companies.contains(&u.company) {
                return bad(format!("user {} names unknown company {}", u.id, u.company));
            }
            if let Some(f) = &u.flavor_override
                && !flavors.contains(f)
            {
                return bad(format!("user {} names unknown flavor {f}", u.id));
            }
            if u.token.trim().is_empty() {
                return bad(format!("user {} has an empty token", u.id));
            }
            if !tokens.insert(u.token.as_str()) {
                // Never name the token itself.
                return bad(format!("user {} shares a token with another user", u.id));
            }
        }
        for s in &self.spaces {
            if s.id.as_str().starts_with(DM_PREFIX) {
                return bad(format!(
                    "space {}: ids starting with {DM_PREFIX:?} are reserved for DMs",
                    s.id
                ));
            }
            if !companies.contains(&s.company) {
                return bad(format!(
                    "space {} names unknown company {}",
                    s.id, s.company
                ));
            }
        }
        // The directory must be able to publish a document every SDK accepts.
        let doc = meridian::model::FederationDoc {
            version: 1,
            issued_at_ms: 0,
            regions: self
                .regions
                .iter()
                .map(|x| meridian::model::Region {
                    id: x.id.clone(),
                    name: x.name.clone(),
                    socket_url: "ws://127.0.0.1:0".into(),
                    public_key: None,
                })
                .collect(),
            policies: self.policies.clone(),
            flavors: self.flavors.clone(),
            expires_at_ms: u64::MAX,
            next_signing_keys: Vec::new(),
        };
        doc.validate()
            .map_err(|e| DevserverError::InvalidConfig(e.to_string()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_default_federation_is_valid() {
        FederationConfig::default_three_regions()
            .validate()
            .unwrap();
        FederationConfig::default_three_regions()
            .with_fixed_ports(7700)
            .validate()
            .unwrap();
    }

    #[test]
    fn the_default_federation_round_trips_through_json() {
        let c = FederationConfig::default_three_regions().with_fixed_ports(7700);
        let json = serde_json::to_string_pretty(&c).unwrap();
        assert!(!json.contains("data_dir") && !json.contains("retention"));
        let back: FederationConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        let c = c.with_data_dir("/tmp/fed").with_retention(Some(10));
        let json = serde_json::to_string_pretty(&c).unwrap();
        let back: FederationConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn fixed_ports_follow_the_directory_port() {
        let c = FederationConfig::default_three_regions().with_fixed_ports(7700);
        assert_eq!(c.directory_port, Some(7700));
        let ports: Vec<_> = c.regions.iter().map(|x| x.port).collect();
        assert_eq!(ports, vec![Some(7701), Some(7702), Some(7703)]);
    }

    #[test]
    fn dangling_references_and_duplicates_are_refused_with_a_reason() {
        let mut c = FederationConfig::default_three_regions();
        c.companies[0].home_region = RegionId::new_unchecked("mars");
        assert!(c.validate().unwrap_err().to_string().contains("mars"));

        let mut c = FederationConfig::default_three_regions();
        c.users[1].token = c.users[0].token.clone();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("shares a token"), "{err}");
        assert!(!err.contains("-token"), "a token leaked into {err}");

        let mut c = FederationConfig::default_three_regions();
        c.spaces[0].id = SpaceId::new_unchecked("dm:ana:ben");
        assert!(c.validate().unwrap_err().to_string().contains("reserved"));

        let mut c = FederationConfig::default_three_regions();
        c.regions.push(c.regions[0].clone());
        assert!(c.validate().unwrap_err().to_string().contains("twice"));

        let mut c = FederationConfig::default_three_regions().with_fixed_ports(7700);
        c.regions[1].port = Some(7700);
        assert!(c.validate().unwrap_err().to_string().contains("7700"));
    }

    #[test]
    fn a_user_config_debug_never_shows_the_token() {
        let c = FederationConfig::default_three_regions();
        let shown = format!("{:?}", c.users[0]);
        assert!(!shown.contains("ana-token"), "{shown}");
    }
}
