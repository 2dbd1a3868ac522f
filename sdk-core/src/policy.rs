//! Geographic policy (GP): may these bytes go to region R? must they be sealed?
//!
//! Owns: the GP rules of the federation as pure functions of the federation document, the
//! user's context and the target. The SDK and the devserver call the same functions.
//! Must never do IO, read a clock or keep state.

use crate::error::{Error, Result};
use crate::model::{
    Flavor, FlavorId, GeoPolicy, PolicyMode, RegionId, Residency, RolloutState, SpaceLocation,
    UserContext,
};

/// Whether `policy`, held by a company homed in `home`, permits `region`.
///
/// `strict` permits the home region only; `whitelist` permits its list, and the home region
/// always (a company's own data lives there).
pub fn permits(policy: &GeoPolicy, home: &RegionId, region: &RegionId) -> bool {
    if region == home {
        return true;
    }
    match &policy.mode {
        PolicyMode::Strict => false,
        PolicyMode::Whitelist { regions } => regions.contains(region),
    }
}

/// Refuses with [`Error::PolicyViolation`] unless the user's policy permits `region`.
pub fn check_region(ctx: &UserContext, region: &RegionId) -> Result<()> {
    if permits(&ctx.policy, &ctx.home_region, region) {
        Ok(())
    } else {
        Err(Error::PolicyViolation {
            region: region.clone(),
            reason: format!(
                "policy {} of user {} does not permit region {region}",
                ctx.policy.id, ctx.user
            ),
        })
    }
}

/// Entering a space is blocked when the space's region is not permitted by the user's GP.
pub fn check_space_entry(ctx: &UserContext, space: &SpaceLocation) -> Result<()> {
    check_region(ctx, &space.region).map_err(|e| match e {
        Error::PolicyViolation { region, .. } => Error::PolicyViolation {
            reason: format!(
                "space {} is housed in {region}, which policy {} of user {} does not permit",
                space.space, ctx.policy.id, ctx.user
            ),
            region,
        },
        other => other,
    })
}

/// The region a DM between `sender` and `recipient` is housed in: the first of the
/// sender's home, the recipient's home, then the sender's other permitted regions, that
/// both policies permit. Creating the DM is refused when no region satisfies both.
pub fn dm_region(sender: &UserContext, recipient: &UserContext) -> Result<RegionId> {
    let mut candidates = vec![sender.home_region.clone(), recipient.home_region.clone()];
    if let PolicyMode::Whitelist { regions } = &sender.policy.mode {
        candidates.extend(regions.iter().cloned());
    }
    candidates
        .into_iter()
        .find(|r| {
            permits(&sender.policy, &sender.home_region, r)
                && permits(&recipient.policy, &recipient.home_region, r)
        })
        .ok_or_else(|| Error::PolicyViolation {
            region: recipient.home_region.clone(),
            reason: format!(
                "no region is permitted by both policy {} of {} and policy {} of {}",
                sender.policy.id, sender.user, recipient.policy.id, recipient.user
            ),
        })
}

/// The last check before a frame is written to `target`'s socket: the user's policy must
/// permit the target region, and a frame about a space may only go to the region that
/// houses that space.
pub fn check_outbound(
    ctx: &UserContext,
    target: &RegionId,
    space_region: Option<&RegionId>,
) -> Result<()> {
    check_region(ctx, target)?;
    if let Some(housing) = space_region
        && housing != target
    {
        return Err(Error::PolicyViolation {
            region: target.clone(),
            reason: format!("a frame for a space housed in {housing} may not go to {target}"),
        });
    }
    Ok(())
}

/// Whether payloads under this residency must stay sealed in transit (DS).
pub fn must_seal_in_transit(residency: Residency) -> bool {
    residency == Residency::Ds
}

/// What the client is about to send something to.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// Content of a space (a message, a join, history).
    Space(&'a SpaceLocation),
    /// A new DM with this peer.
    Dm {
        /// The other user.
        peer: &'a UserContext,
    },
    /// The user's own presence, to a region the client is connected to.
    Presence {
        /// The region.
        region: &'a RegionId,
    },
}

/// Where something may go, and whether it must travel sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The region it goes to.
    pub region: RegionId,
    /// Whether its content must be sealed to that region (data sovereignty).
    pub seal: bool,
}

/// The whole geographic policy in one function: where a payload for `target` may go and
/// whether it must be sealed, or why it may not go anywhere.
///
/// - A space: only to the region housing it, when the user's policy permits that region;
///   sealed when the space's owner or the user is under data sovereignty (DS).
/// - A DM: to the first region both users' policies permit ([`dm_region`]); sealed when
///   either user is under DS.
/// - Presence: only to permitted regions; never sealed (it is not content, and the region
///   must read it to route it).
pub fn decide(ctx: &UserContext, target: Target<'_>) -> Result<Decision> {
    let ds = must_seal_in_transit(ctx.policy.residency);
    match target {
        Target::Space(space) => {
            check_space_entry(ctx, space)?;
            Ok(Decision {
                region: space.region.clone(),
                seal: ds || must_seal_in_transit(space.residency),
            })
        }
        Target::Dm { peer } => Ok(Decision {
            region: dm_region(ctx, peer)?,
            seal: ds || must_seal_in_transit(peer.policy.residency),
        }),
        Target::Presence { region } => {
            check_region(ctx, region)?;
            Ok(Decision {
                region: region.clone(),
                seal: false,
            })
        }
    }
}

/// Decides the flavor a user is routed to.
///
/// A per-user override wins when its flavor is in `beta` or `ga` (beta exists precisely
/// for overridden users); otherwise the company's assignment applies when its flavor is
/// `ga`. A `shadow` flavor routes nobody. Unknown flavor ids are ignored.
pub fn determine_flavor_for_user(
    company_assignment: Option<&FlavorId>,
    user_override: Option<&FlavorId>,
    flavors: &[Flavor],
) -> Option<FlavorId> {
    let find = |id: &FlavorId| flavors.iter().find(|f| &f.id == id);
    if let Some(f) = user_override.and_then(find)
        && matches!(f.rollout, RolloutState::Beta | RolloutState::Ga)
    {
        return Some(f.id.clone());
    }
    company_assignment
        .and_then(find)
        .filter(|f| f.rollout == RolloutState::Ga)
        .map(|f| f.id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CompanyId, PolicyId, SpaceId, SpaceKind, UserId};
    use meridian_test_macros::meridian_test;

    fn r(id: &str) -> RegionId {
        RegionId::new_unchecked(id)
    }

    fn strict() -> GeoPolicy {
        GeoPolicy {
            id: PolicyId::new_unchecked("strict"),
            mode: PolicyMode::Strict,
            residency: Residency::Dr,
        }
    }

    fn whitelist(regions: &[&str]) -> GeoPolicy {
        GeoPolicy {
            id: PolicyId::new_unchecked("wl"),
            mode: PolicyMode::Whitelist {
                regions: regions.iter().map(|x| r(x)).collect(),
            },
            residency: Residency::Ds,
        }
    }

    fn user(name: &str, home: &str, policy: GeoPolicy) -> UserContext {
        UserContext {
            user: UserId::new_unchecked(name),
            home_region: r(home),
            policy,
        }
    }

    fn space_in(region: &str) -> SpaceLocation {
        SpaceLocation {
            space: SpaceId::new_unchecked("s"),
            region: r(region),
            company: CompanyId::new_unchecked("c"),
            kind: SpaceKind::Channel,
            residency: Residency::Dr,
        }
    }

    #[meridian_test]
    fn region_permission_table() {
        // (policy, home, target, permitted)
        let cases = [
            (strict(), "eu-west", "eu-west", true),
            (strict(), "eu-west", "us-east", false),
            (strict(), "eu-west", "ca-central", false),
            (whitelist(&["us-east"]), "ca-central", "us-east", true),
            (whitelist(&["us-east"]), "ca-central", "ca-central", true),
            (whitelist(&["us-east"]), "ca-central", "eu-west", false),
            (whitelist(&[]), "us-east", "us-east", true),
            (whitelist(&[]), "us-east", "eu-west", false),
        ];
        for (policy, home, target, expected) in cases {
            assert_eq!(
                permits(&policy, &r(home), &r(target)),
                expected,
                "policy {:?} homed in {home}, target {target}",
                policy.mode
            );
        }
    }

    #[meridian_test]
    fn entering_a_space_in_a_region_the_policy_forbids_is_blocked() {
        let eu = user("ana", "eu-west", strict());
        assert!(check_space_entry(&eu, &space_in("eu-west")).is_ok());
        let err = check_space_entry(&eu, &space_in("us-east")).unwrap_err();
        assert_eq!(err.code(), crate::ErrorCode::PolicyViolation);
        assert!(err.to_string().contains("us-east"), "{err}");
    }

    #[meridian_test]
    fn a_dm_is_housed_in_the_first_region_both_policies_permit() {
        let ca = user("chloe", "ca-central", whitelist(&["us-east"]));
        let us = user("sam", "us-east", whitelist(&["ca-central", "eu-west"]));
        // Sender's home permitted by both.
        assert_eq!(dm_region(&ca, &us).unwrap(), r("ca-central"));
        assert_eq!(dm_region(&us, &ca).unwrap(), r("us-east"));
        // Sender strict in eu; recipient permits eu: eu.
        let eu = user("ana", "eu-west", strict());
        assert_eq!(dm_region(&eu, &us).unwrap(), r("eu-west"));
        // Recipient is strict elsewhere: the sender's whitelist must reach the recipient's home.
        let us_strict = user("tom", "us-east", strict());
        assert_eq!(dm_region(&ca, &us_strict).unwrap(), r("us-east"));
    }

    #[meridian_test]
    fn a_dm_to_a_recipient_whose_policy_forbids_every_shared_region_is_refused() {
        let eu = user("ana", "eu-west", strict());
        let ca = user("chloe", "ca-central", whitelist(&["us-east"]));
        for (a, b) in [(&eu, &ca), (&ca, &eu)] {
            let err = dm_region(a, b).unwrap_err();
            assert_eq!(err.code(), crate::ErrorCode::PolicyViolation, "{err}");
        }
    }

    #[meridian_test]
    fn outbound_frames_only_go_to_permitted_regions_housing_their_space() {
        let ca = user("chloe", "ca-central", whitelist(&["us-east"]));
        assert!(check_outbound(&ca, &r("us-east"), Some(&r("us-east"))).is_ok());
        assert!(check_outbound(&ca, &r("us-east"), None).is_ok());
        assert!(check_outbound(&ca, &r("eu-west"), None).is_err());
        assert!(check_outbound(&ca, &r("us-east"), Some(&r("ca-central"))).is_err());
    }

    #[meridian_test]
    fn only_ds_policies_demand_sealing_in_transit() {
        assert!(must_seal_in_transit(Residency::Ds));
        assert!(!must_seal_in_transit(Residency::Dr));
    }

    /// strict?, the user's residency, target region, target kind, the other side's
    /// residency, and the expected outcome (`None`: refused; `Some(seal)`).
    type Row = (
        bool,
        Residency,
        &'static str,
        &'static str,
        Residency,
        Option<bool>,
    );

    /// Every combination of mode (strict / whitelist), residency (DR / DS), region (home /
    /// foreign permitted / foreign forbidden) and target (space / DM / presence).
    #[meridian_test]
    fn decision_table() {
        use Residency::{Dr, Ds};
        // The user is homed in ca-central; "foreign" is us-east (whitelisted by the
        // whitelist policy) and "forbidden" is eu-west (permitted by no policy here).
        let policy = |strict: bool, residency| GeoPolicy {
            id: PolicyId::new_unchecked("p"),
            mode: if strict {
                PolicyMode::Strict
            } else {
                PolicyMode::Whitelist {
                    regions: vec![r("us-east")],
                }
            },
            residency,
        };
        let space = |region: &str, residency| SpaceLocation {
            residency,
            ..space_in(region)
        };
        // A peer homed in the target region who permits only it.
        let peer = |region: &str, residency| UserContext {
            user: UserId::new_unchecked("peer"),
            home_region: r(region),
            policy: GeoPolicy {
                mode: PolicyMode::Strict,
                ..policy(true, residency)
            },
        };
        // (strict, user residency, target region, target kind, other side's residency,
        //  expected: None = refused, Some(seal))
        #[rustfmt::skip]
        let rows: &[Row] = &[
            (true,  Dr, "ca-central", "space",    Dr, Some(false)),
            (true,  Dr, "ca-central", "space",    Ds, Some(true)),
            (true,  Ds, "ca-central", "space",    Dr, Some(true)),
            (true,  Dr, "us-east",    "space",    Dr, None),
            (true,  Ds, "us-east",    "space",    Ds, None),
            (false, Dr, "us-east",    "space",    Dr, Some(false)),
            (false, Dr, "us-east",    "space",    Ds, Some(true)),
            (false, Ds, "us-east",    "space",    Dr, Some(true)),
            (false, Dr, "eu-west",    "space",    Dr, None),
            (false, Ds, "eu-west",    "space",    Ds, None),
            (true,  Dr, "ca-central", "dm",       Dr, Some(false)),
            (true,  Dr, "ca-central", "dm",       Ds, Some(true)),
            (true,  Ds, "ca-central", "dm",       Dr, Some(true)),
            (true,  Dr, "us-east",    "dm",       Dr, None),
            (false, Dr, "us-east",    "dm",       Dr, Some(false)),
            (false, Ds, "us-east",    "dm",       Dr, Some(true)),
            (false, Dr, "us-east",    "dm",       Ds, Some(true)),
            (false, Dr, "eu-west",    "dm",       Dr, None),
            (true,  Dr, "ca-central", "presence", Dr, Some(false)),
            (true,  Ds, "ca-central", "presence", Dr, Some(false)),
            (true,  Ds, "us-east",    "presence", Dr, None),
            (false, Ds, "us-east",    "presence", Dr, Some(false)),
            (false, Dr, "eu-west",    "presence", Dr, None),
            (false, Ds, "eu-west",    "presence", Dr, None),
        ];
        for &(strict, residency, region, kind, other, expected) in rows {
            let ctx = user("u", "ca-central", policy(strict, residency));
            let (s, p, reg) = (space(region, other), peer(region, other), r(region));
            let target = match kind {
                "space" => Target::Space(&s),
                "dm" => Target::Dm { peer: &p },
                _ => Target::Presence { region: &reg },
            };
            let got = decide(&ctx, target);
            let what = format!(
                "{} {residency:?} user, {kind} in {region} ({other:?})",
                if strict { "strict" } else { "whitelist" }
            );
            match expected {
                None => assert_eq!(
                    got.map_err(|e| e.code()),
                    Err(crate::ErrorCode::PolicyViolation),
                    "{what}"
                ),
                Some(seal) => {
                    let d = got.unwrap_or_else(|e| panic!("{what}: refused: {e}"));
                    assert_eq!(d.seal, seal, "{what}: seal");
                    assert_eq!(d.region, r(region), "{what}: region");
                }
            }
        }
    }

    #[meridian_test]
    fn flavor_table() {
        let f = |id: &str, rollout| Flavor {
            id: FlavorId::new_unchecked(id),
            regions: vec![],
            rollout,
        };
        let flavors = [
            f("eu", RolloutState::Ga),
            f("ca", RolloutState::Beta),
            f("us2", RolloutState::Shadow),
        ];
        let id = |s: &str| FlavorId::new_unchecked(s);
        // (company, override, expected)
        let cases: [(Option<&str>, Option<&str>, Option<&str>); 8] = [
            (Some("eu"), None, Some("eu")),
            (Some("ca"), None, None), // beta needs an override
            (Some("eu"), Some("ca"), Some("ca")),
            (Some("eu"), Some("us2"), Some("eu")), // shadow routes nobody
            (None, Some("ca"), Some("ca")),
            (None, None, None),
            (Some("nope"), None, None),
            (Some("us2"), None, None),
        ];
        for (company, over, expected) in cases {
            let company = company.map(id);
            let over = over.map(id);
            assert_eq!(
                determine_flavor_for_user(company.as_ref(), over.as_ref(), &flavors),
                expected.map(id),
                "company {company:?}, override {over:?}"
            );
        }
    }
}
