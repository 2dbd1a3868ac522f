//! The residency audit: after a run, proves from what the regions and the relay actually
//! received that no data went where a policy forbids it.
//!
//! Violations it looks for:
//! - a frame from a user (a connect attempt included) that reached a region the user's
//!   policy does not permit;
//! - the text of a message of a data-sovereignty space, readable in anything a region
//!   received (such text must only ever arrive sealed);
//! - the text of any message, readable in anything the relay carried.

use devserver::{Federation, TapKind};
use meridian::model::{Residency, SpaceId, UserId};
use meridian::policy;

/// What an audit saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// Frames the regions and the relay received.
    pub frames: usize,
    /// How many of them carried sealed payloads.
    pub sealed: usize,
    /// What broke the rules, one line each.
    pub violations: Vec<String>,
}

impl Audit {
    /// One line for the test log.
    pub fn summary(&self, run: &str) -> String {
        format!(
            "residency[{run}]: frames={} sealed={} violations={}",
            self.frames,
            self.sealed,
            self.violations.len()
        )
    }

    /// Prints the summary and fails with every violation if there is any.
    // The summary line is meant for the test log (the CI output shows it per run).
    #[allow(clippy::print_stdout)]
    pub fn assert_clean(&self, run: &str) {
        println!("{}", self.summary(run));
        assert!(
            self.violations.is_empty(),
            "residency violations in {run}:\n{}",
            self.violations.join("\n")
        );
    }
}

/// Audits everything the federation's regions and relay received, for the messages stored
/// in `spaces`.
pub fn audit(fed: &Federation, spaces: &[SpaceId]) -> Audit {
    let config = fed.config();
    let mut violations = Vec::new();
    let mut frames = 0;
    let mut sealed = 0;

    let permitted = |user: &UserId, region: &meridian::model::RegionId| -> bool {
        let Some(u) = config.users.iter().find(|u| &u.id == user) else {
            return false;
        };
        let Some(c) = config.companies.iter().find(|c| c.id == u.company) else {
            return false;
        };
        let Some(p) = config.policies.iter().find(|p| p.id == c.policy) else {
            return false;
        };
        policy::permits(p, &c.home_region, region)
    };

    for region in fed.region_ids() {
        let Some(tap) = fed.tap(&region) else {
            continue;
        };
        if tap.dropped() > 0 {
            violations.push(format!(
                "{region}: the tap dropped records; the audit can't vouch"
            ));
        }
        for record in tap.records() {
            frames += 1;
            if record.is_sealed() {
                sealed += 1;
            }
            if let Some(user) = &record.user
                && !permitted(user, &region)
            {
                let what = match &record.kind {
                    TapKind::Connect { .. } => "a connect".to_owned(),
                    TapKind::Event { name, .. } => format!("event {name}"),
                    TapKind::Disconnect => "a disconnect".to_owned(),
                };
                violations.push(format!(
                    "{region} received {what} from {user}, whose policy forbids {region}"
                ));
            }
        }
    }

    let relay = fed.relay_tap();
    frames += relay.frames();
    sealed += relay.sealed_frames();
    for space in spaces {
        let ds = fed
            .space_location(space)
            .is_some_and(|l| l.residency == Residency::Ds);
        for message in fed.messages(space) {
            // Short texts would match by accident anywhere; the suites use distinctive ones.
            if message.body.len() < 12 {
                continue;
            }
            if relay.saw_text(&message.body) {
                violations.push(format!(
                    "the relay carried the text of message {} of {space} readable",
                    message.seq
                ));
            }
            if ds {
                for region in fed.region_ids() {
                    if fed
                        .tap(&region)
                        .is_some_and(|t| !t.never_saw_text(&message.body))
                    {
                        violations.push(format!(
                            "{region} received the text of message {} of DS space {space} readable",
                            message.seq
                        ));
                    }
                }
            }
        }
    }
    Audit {
        frames,
        sealed,
        violations,
    }
}

/// Audits everything the federation received, for the messages of every configured space.
pub fn audit_federation(fed: &Federation) -> Audit {
    let spaces: Vec<SpaceId> = fed.config().spaces.iter().map(|s| s.id.clone()).collect();
    audit(fed, &spaces)
}

/// Audits a federation at the end of a test and prints the summary line, named after the
/// test's file and line: `residency_check!(fed)`.
#[macro_export]
macro_rules! residency_check {
    ($fed:expr) => {
        $crate::residency::audit_federation(&$fed).assert_clean(concat!(file!(), ":", line!()))
    };
}
