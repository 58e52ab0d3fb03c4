//! Reading a model's `dynamic_batching` configuration into a [`QueuePolicy`].

use std::time::Duration;

use quiver_core::{
    proto::{model_config::SchedulingChoice, model_queue_policy::TimeoutAction as ProtoAction, ModelQueuePolicy},
    ModelConfig,
};

use super::queue::{LevelPolicy, QueuePolicy, TimeoutAction};

/// Queue bound used when the config sets no `max_queue_size` (Triton's 0 means unbounded;
/// Quiver always bounds its queues).
pub const DEFAULT_MAX_QUEUE_SIZE: usize = 1024;

/// Most priority levels a config may ask for. Each level is a queue the scheduler keeps and
/// scans, so the count, a 64-bit number in the config, is bounded before anything is sized by it.
pub const MAX_PRIORITY_LEVELS: u64 = 1024;

fn level(policy: Option<&ModelQueuePolicy>) -> LevelPolicy {
    let Some(p) = policy else {
        return LevelPolicy {
            timeout_action: TimeoutAction::Reject,
            default_timeout: None,
            allow_timeout_override: false,
            max_queue_size: DEFAULT_MAX_QUEUE_SIZE,
        };
    };
    LevelPolicy {
        timeout_action: if p.timeout_action == ProtoAction::Delay as i32 { TimeoutAction::Delay } else { TimeoutAction::Reject },
        default_timeout: (p.default_timeout_microseconds > 0).then(|| Duration::from_micros(p.default_timeout_microseconds)),
        allow_timeout_override: p.allow_timeout_override,
        max_queue_size: usize::try_from(p.max_queue_size).ok().filter(|&n| n > 0).unwrap_or(DEFAULT_MAX_QUEUE_SIZE),
    }
}

/// The queue policy of a completed config and whether responses keep arrival order.
///
/// `dynamic_batching` with `max_batch_size > 0` merges requests; otherwise each request runs
/// alone (Triton's default scheduler). Preferred sizes default to `[max_batch_size]`; sizes
/// above the maximum are dropped. `priority_levels: 0` means one level.
pub fn queue_policy(config: &ModelConfig) -> Result<(QueuePolicy, bool), String> {
    let max_batch_size = usize::try_from(config.max_batch_size).unwrap_or(0);
    let Some(SchedulingChoice::DynamicBatching(db)) = &config.scheduling_choice else {
        let policy = QueuePolicy {
            dynamic: false,
            max_batch_size: max_batch_size.max(1),
            max_batch_tokens: None,
            preferred_batch_sizes: Vec::new(),
            max_queue_delay: Duration::ZERO,
            default_priority: 1,
            levels: vec![level(None)],
        };
        return Ok((policy, false));
    };
    let mut preferred: Vec<usize> =
        db.preferred_batch_size.iter().filter_map(|&p| usize::try_from(p).ok()).filter(|&p| p > 0 && p <= max_batch_size.max(1)).collect();
    if preferred.is_empty() {
        preferred.push(max_batch_size.max(1));
    }
    if db.priority_levels > MAX_PRIORITY_LEVELS {
        return Err(format!("priority_levels {} is more than the {MAX_PRIORITY_LEVELS} supported", db.priority_levels));
    }
    let levels = db.priority_levels as usize;
    let default_priority = if levels == 0 {
        1
    } else if (1..=levels as u64).contains(&db.default_priority_level) {
        db.default_priority_level as usize
    } else {
        return Err(format!("default_priority_level {} must be between 1 and priority_levels {levels}", db.default_priority_level));
    };
    let default = db.default_queue_policy.as_ref();
    let levels = (1..=levels.max(1) as u64).map(|l| level(db.priority_queue_policy.get(&l).or(default))).collect();
    let policy = QueuePolicy {
        dynamic: max_batch_size > 0,
        max_batch_size: max_batch_size.max(1),
        max_batch_tokens: None,
        preferred_batch_sizes: preferred,
        max_queue_delay: Duration::from_micros(db.max_queue_delay_microseconds),
        default_priority,
        levels,
    };
    Ok((policy, db.preserve_ordering))
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_core::config::parse_pbtxt;

    #[test]
    fn reads_dynamic_batching() {
        let config = parse_pbtxt(
            r#"max_batch_size: 16
            dynamic_batching {
              preferred_batch_size: [4, 8, 64]
              max_queue_delay_microseconds: 500
              preserve_ordering: true
              priority_levels: 2
              default_priority_level: 2
              default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 1000 allow_timeout_override: true max_queue_size: 8 }
              priority_queue_policy { key: 1 value: { max_queue_size: 2 } }
            }"#,
        )
        .unwrap();
        let (policy, ordered) = queue_policy(&config).unwrap();
        assert!(ordered && policy.dynamic);
        assert_eq!(policy.max_batch_size, 16);
        assert_eq!(policy.preferred_batch_sizes, vec![4, 8]);
        assert_eq!(policy.max_queue_delay, Duration::from_micros(500));
        assert_eq!(policy.default_priority, 2);
        assert_eq!(policy.levels[0].max_queue_size, 2);
        assert_eq!(policy.levels[0].timeout_action, TimeoutAction::Reject);
        assert_eq!(policy.levels[1].max_queue_size, 8);
        assert_eq!(policy.levels[1].timeout_action, TimeoutAction::Delay);
        assert_eq!(policy.levels[1].default_timeout, Some(Duration::from_millis(1)));
        assert!(policy.levels[1].allow_timeout_override);
    }

    #[test]
    fn defaults_follow_triton() {
        let (policy, ordered) = queue_policy(&parse_pbtxt("max_batch_size: 8 dynamic_batching {}").unwrap()).unwrap();
        assert!(policy.dynamic && !ordered);
        assert_eq!(policy.preferred_batch_sizes, vec![8]);
        assert_eq!(policy.max_queue_delay, Duration::ZERO);
        assert_eq!(policy.levels.len(), 1);
        assert_eq!(policy.levels[0].max_queue_size, DEFAULT_MAX_QUEUE_SIZE);
        let (plain, _) = queue_policy(&parse_pbtxt("max_batch_size: 8").unwrap()).unwrap();
        assert!(!plain.dynamic);
        let (unbatched, _) = queue_policy(&parse_pbtxt("max_batch_size: 0 dynamic_batching {}").unwrap()).unwrap();
        assert!(!unbatched.dynamic);
        assert!(queue_policy(&parse_pbtxt("max_batch_size: 8 dynamic_batching { priority_levels: 2 }").unwrap()).is_err());
        // A level count from the config sizes nothing before it is checked.
        let huge = parse_pbtxt("max_batch_size: 8 dynamic_batching { priority_levels: 18446744073709551615 default_priority_level: 1 }");
        let err = queue_policy(&huge.unwrap()).unwrap_err();
        assert!(err.contains("priority_levels 18446744073709551615 is more than the 1024 supported"), "{err}");
        let most = parse_pbtxt("max_batch_size: 8 dynamic_batching { priority_levels: 1024 default_priority_level: 1 }").unwrap();
        assert_eq!(queue_policy(&most).unwrap().0.levels.len(), 1024);
    }
}
