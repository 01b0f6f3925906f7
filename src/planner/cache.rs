//! The plan cache: plans keyed by (snapshot version, target, normalized
//! template), bounded, and emptied when a new snapshot (VSchema) arrives.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{Plan, PlanError};

/// Plans by (target, template), for one snapshot version.
type Plans = (u64, HashMap<(String, String), Arc<Plan>>);

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
            inner: Mutex::new((0, HashMap::new())),
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
        {
            let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if g.0 != version {
                g.0 = version;
                g.1.clear();
            }
            if let Some(p) = g.1.get(&(target.to_string(), template.to_string())) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(p.clone());
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let p = Arc::new(plan()?);
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.0 == version {
            if g.1.len() >= self.cap {
                g.1.clear();
            }
            g.1.insert((target.to_string(), template.to_string()), p.clone());
        }
        Ok(p)
    }

    /// Number of cached plans.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|g| g.1.len()).unwrap_or(0)
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every plan (a new VSchema arrived).
    pub fn clear(&self) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.1.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::ShowPlan;

    #[test]
    fn hits_misses_versions_and_bounds() {
        let c = PlanCache::new(2);
        let mk = || Ok(Plan::Show(ShowPlan::Keyspaces));
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
}
