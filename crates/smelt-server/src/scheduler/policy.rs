//! How a model version schedules its requests, read once from its configuration:
//! the number of execution slots (instance_group), whether and how requests are
//! batched together (dynamic_batching), and the queue policies per priority level.

use crate::proto::inference::{model_config::SchedulingChoice, model_queue_policy, ModelConfig, ModelQueuePolicy};
use std::collections::BTreeMap;
use std::time::Duration;

/// What happens to a request whose queue timeout passes before it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutAction {
    /// Fail it with "Request timeout expired".
    Reject,
    /// Run it after every request that has not timed out.
    Delay,
}

/// The rules of one priority level's queue (Triton's ModelQueuePolicy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueuePolicy {
    /// At most this many requests wait at this level; `None`: unbounded.
    pub max_queue_size: Option<usize>,
    /// How long a request may wait; `None`: for ever.
    pub default_timeout: Option<Duration>,
    /// Whether a request's own `timeout` parameter may shorten `default_timeout`.
    pub allow_timeout_override: bool,
    pub timeout_action: TimeoutAction,
}

impl QueuePolicy {
    /// The policy of a model without dynamic batching: unbounded, and a request's
    /// `timeout` parameter bounds its wait for a free instance.
    pub fn unbounded() -> QueuePolicy {
        QueuePolicy {
            max_queue_size: None,
            default_timeout: None,
            allow_timeout_override: true,
            timeout_action: TimeoutAction::Reject,
        }
    }

    fn from_config(policy: &ModelQueuePolicy) -> QueuePolicy {
        QueuePolicy {
            max_queue_size: (policy.max_queue_size > 0).then_some(policy.max_queue_size as usize),
            default_timeout: (policy.default_timeout_microseconds > 0)
                .then(|| Duration::from_micros(policy.default_timeout_microseconds)),
            allow_timeout_override: policy.allow_timeout_override,
            timeout_action: match model_queue_policy::TimeoutAction::try_from(policy.timeout_action) {
                Ok(model_queue_policy::TimeoutAction::Delay) => TimeoutAction::Delay,
                _ => TimeoutAction::Reject,
            },
        }
    }

    /// The time a request may wait at this level, given its own `timeout`.
    /// Triton lets a request only shorten the default; a default of "no timeout"
    /// is read as infinitely long, so any request timeout is shorter.
    pub fn timeout_for(&self, requested: Option<Duration>) -> Option<Duration> {
        match (self.default_timeout, requested.filter(|_| self.allow_timeout_override)) {
            (Some(default), Some(asked)) => Some(default.min(asked)),
            (default, asked) => default.or(asked),
        }
    }
}

/// The scheduling of one model version.
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerConfig {
    /// Execution slots: the sum of the instance group counts.
    pub instances: usize,
    /// Whether requests are merged into one execution (dynamic batching on a
    /// model with max_batch_size > 0).
    pub batching: bool,
    /// The largest batch an execution may hold (the batch dimension).
    pub max_batch_size: usize,
    /// Batch sizes sent at once when reached, ascending.
    pub preferred_batch_sizes: Vec<usize>,
    /// How long the oldest request may wait for a batch to fill.
    pub max_queue_delay: Duration,
    /// Priority levels 1 (highest) ..= `priority_levels`; 0: one level.
    pub priority_levels: u64,
    pub default_priority_level: u64,
    pub default_policy: QueuePolicy,
    pub level_policies: BTreeMap<u64, QueuePolicy>,
}

impl SchedulerConfig {
    /// One slot, no batching, an unbounded queue: what a bare model gets.
    pub fn default_scheduler(instances: usize) -> SchedulerConfig {
        SchedulerConfig {
            instances: instances.max(1),
            batching: false,
            max_batch_size: 0,
            preferred_batch_sizes: Vec::new(),
            max_queue_delay: Duration::ZERO,
            priority_levels: 0,
            default_priority_level: 0,
            default_policy: QueuePolicy::unbounded(),
            level_policies: BTreeMap::new(),
        }
    }

    /// Reads and checks the scheduling fields of a completed configuration.
    /// Errors name the field at fault.
    pub fn from_model_config(config: &ModelConfig) -> Result<SchedulerConfig, String> {
        let instances = crate::repository::instance_count(config);
        let Some(SchedulingChoice::DynamicBatching(db)) = &config.scheduling_choice else {
            return Ok(SchedulerConfig::default_scheduler(instances));
        };
        let max_batch_size = config.max_batch_size.max(0) as usize;
        let mut preferred = Vec::with_capacity(db.preferred_batch_size.len());
        for (i, &size) in db.preferred_batch_size.iter().enumerate() {
            if size < 1 || (max_batch_size > 0 && size as usize > max_batch_size) {
                return Err(format!(
                    "dynamic_batching.preferred_batch_size[{i}] is {size}; it must be between 1 and max_batch_size \
                     ({max_batch_size})"
                ));
            }
            preferred.push(size as usize);
        }
        preferred.sort_unstable();
        preferred.dedup();
        let levels = db.priority_levels;
        if levels > 0 && !(1..=levels).contains(&db.default_priority_level) {
            return Err(format!(
                "dynamic_batching.default_priority_level is {}; with priority_levels {levels} it must be between 1 \
                 and {levels}",
                db.default_priority_level
            ));
        }
        let mut level_policies = BTreeMap::new();
        for (&level, policy) in &db.priority_queue_policy {
            if !(1..=levels).contains(&level) {
                return Err(format!(
                    "dynamic_batching.priority_queue_policy has level {level}, outside the priority levels 1..={levels}"
                ));
            }
            level_policies.insert(level, QueuePolicy::from_config(policy));
        }
        let default_policy = db.default_queue_policy.as_ref().map_or(
            QueuePolicy {
                max_queue_size: None,
                default_timeout: None,
                allow_timeout_override: false,
                timeout_action: TimeoutAction::Reject,
            },
            QueuePolicy::from_config,
        );
        Ok(SchedulerConfig {
            instances,
            batching: max_batch_size > 0,
            max_batch_size,
            preferred_batch_sizes: preferred,
            max_queue_delay: Duration::from_micros(db.max_queue_delay_microseconds),
            priority_levels: levels,
            default_priority_level: if levels > 0 { db.default_priority_level } else { 0 },
            default_policy,
            level_policies,
        })
    }

    /// The level a request with `priority` (0: none given) waits at. As in
    /// Triton, a priority outside 1..=priority_levels takes the default level.
    pub fn level_of(&self, priority: u64) -> u64 {
        if self.priority_levels == 0 {
            0
        } else if priority == 0 || priority > self.priority_levels {
            self.default_priority_level
        } else {
            priority
        }
    }

    pub fn policy_of(&self, level: u64) -> &QueuePolicy {
        self.level_policies.get(&level).unwrap_or(&self.default_policy)
    }

    /// The size at which a forming batch is sent without waiting: the largest
    /// preferred size, else max_batch_size.
    pub fn max_preferred_batch_size(&self) -> usize {
        self.preferred_batch_sizes.last().copied().unwrap_or(self.max_batch_size).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::inference::ModelDynamicBatching;

    fn config(db: ModelDynamicBatching, max_batch_size: i32) -> ModelConfig {
        ModelConfig {
            max_batch_size,
            scheduling_choice: Some(SchedulingChoice::DynamicBatching(db)),
            ..Default::default()
        }
    }

    #[test]
    fn reads_dynamic_batching_and_queue_policies() {
        let mut db = ModelDynamicBatching {
            preferred_batch_size: vec![8, 4],
            max_queue_delay_microseconds: 500,
            priority_levels: 3,
            default_priority_level: 2,
            default_queue_policy: Some(ModelQueuePolicy {
                timeout_action: 1,
                default_timeout_microseconds: 1000,
                allow_timeout_override: true,
                max_queue_size: 5,
            }),
            ..Default::default()
        };
        db.priority_queue_policy.insert(1, ModelQueuePolicy { max_queue_size: 2, ..Default::default() });
        let c = SchedulerConfig::from_model_config(&config(db, 8)).unwrap();
        assert!(c.batching);
        assert_eq!(c.preferred_batch_sizes, vec![4, 8]);
        assert_eq!(c.max_queue_delay, Duration::from_micros(500));
        assert_eq!(c.level_of(0), 2);
        assert_eq!(c.level_of(1), 1);
        assert_eq!(c.level_of(9), 2);
        assert_eq!(c.policy_of(1).max_queue_size, Some(2));
        assert_eq!(c.policy_of(1).timeout_action, TimeoutAction::Reject);
        let default = c.policy_of(3);
        assert_eq!(default.max_queue_size, Some(5));
        assert_eq!(default.timeout_action, TimeoutAction::Delay);
        // A request may shorten the default timeout, never lengthen it.
        assert_eq!(default.timeout_for(Some(Duration::from_micros(10))), Some(Duration::from_micros(10)));
        assert_eq!(default.timeout_for(Some(Duration::from_secs(10))), Some(Duration::from_micros(1000)));
        assert_eq!(default.timeout_for(None), Some(Duration::from_micros(1000)));
    }

    #[test]
    fn bad_fields_are_named() {
        let db = ModelDynamicBatching { preferred_batch_size: vec![16], ..Default::default() };
        let err = SchedulerConfig::from_model_config(&config(db, 8)).unwrap_err();
        assert!(err.contains("preferred_batch_size[0] is 16"), "{err}");
        let db = ModelDynamicBatching { priority_levels: 2, default_priority_level: 0, ..Default::default() };
        let err = SchedulerConfig::from_model_config(&config(db, 8)).unwrap_err();
        assert!(err.contains("default_priority_level"), "{err}");
        let mut db = ModelDynamicBatching { priority_levels: 2, default_priority_level: 1, ..Default::default() };
        db.priority_queue_policy.insert(3, ModelQueuePolicy::default());
        let err = SchedulerConfig::from_model_config(&config(db, 8)).unwrap_err();
        assert!(err.contains("level 3"), "{err}");
    }

    #[test]
    fn override_is_ignored_unless_allowed() {
        let strict = QueuePolicy { allow_timeout_override: false, ..QueuePolicy::unbounded() };
        assert_eq!(strict.timeout_for(Some(Duration::from_millis(1))), None);
        assert_eq!(
            QueuePolicy::unbounded().timeout_for(Some(Duration::from_millis(1))),
            Some(Duration::from_millis(1))
        );
        let c = SchedulerConfig::from_model_config(&ModelConfig::default()).unwrap();
        assert!(!c.batching);
        assert_eq!(c.level_of(7), 0);
    }
}
