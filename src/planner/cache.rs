//! The plan cache: plans keyed by (snapshot version, target, normalized
//! template), bounded, and emptied when a new snapshot (VSchema) arrives.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{Plan, PlanError};

/// Plans by target, then template (nested so a hit looks up borrowed
/// strings without building a key), for one snapshot version.
struct Plans {
    version: u64,
    len: usize,
    by_target: HashMap<String, HashMap<String, Arc<Plan>>>,
}

impl Plans {
    fn clear(&mut self) {
        self.by_target.clear();
        self.len = 0;
    }
}

/// Templates longer than this are planned every time, not cached. A bulk
/// INSERT's plan holds each row's values (a 10,000-row insert's, a few
/// megabytes), kept for a statement whose row count rarely repeats;
/// planning it again costs about what parsing it does, which a cache hit
/// would not save either way for a statement that size.
pub const MAX_TEMPLATE: usize = 16 * 1024;

/// Shared by every session of a server.
pub struct PlanCache {
    inner: Mutex<Plans>,
    cap: usize,
    /// Lookups answered from the cache.
    pub hits: AtomicU64,
    /// Lookups that planned.
    pub misses: AtomicU64,
}

impl PlanCache {
    /// A cache holding at most `cap` plans.
    pub fn new(cap: usize) -> Self {
        PlanCache {
            inner: Mutex::new(Plans {
                version: 0,
                len: 0,
                by_target: HashMap::new(),
            }),
            cap: cap.max(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cached plan, or a new one from `plan` (errors are not cached).
    pub fn get_or_plan(
        &self,
        version: u64,
        target: &str,
        template: &str,
        plan: impl FnOnce() -> Result<Plan, PlanError>,
    ) -> Result<Arc<Plan>, PlanError> {
        // Never cached, so never looked up (no hashing of a long text).
        if template.len() > MAX_TEMPLATE {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return plan().map(Arc::new);
        }
        {
            let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if g.version != version {
                g.version = version;
                g.clear();
            }
            if let Some(p) = g.by_target.get(target).and_then(|m| m.get(template)) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(p.clone());
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let p = Arc::new(plan()?);
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.version == version {
            if g.len >= self.cap {
                g.clear();
            }
            let fresh = g
                .by_target
                .entry(target.to_string())
                .or_default()
                .insert(template.to_string(), p.clone())
                .is_none();
            g.len += usize::from(fresh);
        }
        Ok(p)
    }

    /// Number of cached plans.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|g| g.len).unwrap_or(0)
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every plan (a new VSchema arrived).
    pub fn clear(&self) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::ShowPlan;

    #[test]
    fn hits_misses_versions_and_bounds() {
        let c = PlanCache::new(2);
        let mk = || Ok(Plan::Show(ShowPlan::Keyspaces(None)));
        c.get_or_plan(1, "ks", "a", mk).unwrap();
        c.get_or_plan(1, "ks", "a", || panic!("should be cached"))
            .unwrap();
        assert_eq!(c.hits.load(Ordering::Relaxed), 1);
        c.get_or_plan(1, "ks", "b", mk).unwrap();
        c.get_or_plan(1, "ks", "c", mk).unwrap();
        assert!(c.len() <= 2);
        c.get_or_plan(2, "ks", "c", mk).unwrap();
        assert_eq!(c.len(), 1, "a new version starts empty");
        assert!(c
            .get_or_plan(2, "ks", "x", || Err(PlanError::NoDatabase))
            .is_err());
        assert_eq!(c.len(), 1, "errors are not cached");
    }

    #[test]
    fn long_templates_are_planned_every_time() {
        let c = PlanCache::new(10);
        let mk = || Ok(Plan::Show(ShowPlan::Keyspaces(None)));
        let long = "x".repeat(MAX_TEMPLATE + 1);
        let mut planned = 0;
        for _ in 0..2 {
            c.get_or_plan(1, "ks", &long, || {
                planned += 1;
                mk()
            })
            .unwrap();
        }
        assert_eq!((planned, c.len()), (2, 0));
        let at_bound = "x".repeat(MAX_TEMPLATE);
        c.get_or_plan(1, "ks", &at_bound, mk).unwrap();
        c.get_or_plan(1, "ks", &at_bound, || panic!("should be cached"))
            .unwrap();
        assert_eq!(c.len(), 1);
    }
}
