//! Where a CPU plan's time goes, node by node: a diagnostic switched on with
//! `SMELT_CPU_PROFILE=1` (or `all`, to list every node rather than the ten
//! costliest). Each node's kernel time is summed over the plan's runs; when the
//! plan is dropped (the session ends) a table by op type and the costliest nodes
//! go to standard error. Off, it costs one branch per node.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Per-node time and calls, shared by concurrent runs.
pub(super) struct NodeProfile {
    nanos: Vec<AtomicU64>,
    calls: Vec<AtomicU64>,
    /// How many of the costliest nodes the report lists.
    listed: usize,
}

/// Nodes the report lists unless `SMELT_CPU_PROFILE=all`.
const LISTED_BY_DEFAULT: usize = 10;

impl NodeProfile {
    /// A profile for `nodes` nodes when `SMELT_CPU_PROFILE` is set to anything
    /// but `0` or empty; `all` lists every node in the report.
    pub(super) fn from_env(nodes: usize) -> Option<NodeProfile> {
        NodeProfile::from_setting(std::env::var("SMELT_CPU_PROFILE").ok().as_deref(), nodes)
    }

    fn from_setting(setting: Option<&str>, nodes: usize) -> Option<NodeProfile> {
        let listed = match setting {
            None | Some("") | Some("0") => return None,
            Some("all") => nodes,
            Some(_) => LISTED_BY_DEFAULT,
        };
        Some(NodeProfile {
            nanos: (0..nodes).map(|_| AtomicU64::new(0)).collect(),
            calls: (0..nodes).map(|_| AtomicU64::new(0)).collect(),
            listed,
        })
    }

    /// Adds the time since `start` to node `index`. A node's first call is
    /// counted but not timed: it pays one-off costs (weights transformed on
    /// first use, pages touched) that steady state does not. A node that runs
    /// chunk by chunk (a split batch) is called once per chunk, and only a
    /// run's `first_chunk` counts as a call.
    pub(super) fn record(&self, index: usize, start: Instant, first_chunk: bool) {
        let nanos = start.elapsed().as_nanos() as u64;
        let earlier = if first_chunk {
            self.calls[index].fetch_add(1, Ordering::Relaxed)
        } else {
            self.calls[index].load(Ordering::Relaxed) - 1
        };
        if earlier > 0 {
            self.nanos[index].fetch_add(nanos, Ordering::Relaxed);
        }
    }

    /// The report: per op type, then the costliest nodes, in milliseconds
    /// per run (calls of the first node, less the untimed first, count the runs).
    pub(super) fn report(&self, nodes: &[(String, &'static str)]) -> String {
        let runs = self.calls.first().map_or(0, |c| c.load(Ordering::Relaxed)).saturating_sub(1).max(1) as f64;
        let ms = |i: usize| self.nanos[i].load(Ordering::Relaxed) as f64 / 1e6 / runs;
        let total: f64 = (0..nodes.len()).map(ms).sum();
        let mut by_op: Vec<(&str, f64, usize)> = Vec::new();
        for (i, (_, op)) in nodes.iter().enumerate() {
            match by_op.iter_mut().find(|(o, ..)| o == op) {
                Some(entry) => {
                    entry.1 += ms(i);
                    entry.2 += 1;
                }
                None => by_op.push((op, ms(i), 1)),
            }
        }
        by_op.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut out = format!("CPU profile: {runs} runs after the first, {total:.3} ms of kernels per run\n");
        out += "  op type                nodes   ms/run   share\n";
        for (op, t, n) in &by_op {
            out += &format!("  {op:<22} {n:>5} {t:>8.3} {:>6.1}%\n", 100.0 * t / total.max(1e-12));
        }
        let mut order: Vec<usize> = (0..nodes.len()).collect();
        order.sort_by(|&a, &b| ms(b).total_cmp(&ms(a)));
        out += "  costliest nodes:\n";
        for &i in order.iter().take(self.listed) {
            out += &format!("  {:<40} {:<14} {:>8.3} ms\n", nodes[i].0, nodes[i].1, ms(i));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_chooses_how_many_nodes_are_listed() {
        assert!(NodeProfile::from_setting(None, 30).is_none());
        assert!(NodeProfile::from_setting(Some("0"), 30).is_none());
        assert!(NodeProfile::from_setting(Some(""), 30).is_none());
        assert_eq!(NodeProfile::from_setting(Some("1"), 30).unwrap().listed, LISTED_BY_DEFAULT);
        let all = NodeProfile::from_setting(Some("all"), 30).unwrap();
        assert_eq!(all.listed, 30);
        // Every node appears, costliest first.
        for i in 0..30 {
            all.nanos[i].store(1_000_000 * (i as u64 + 1), Ordering::Relaxed);
            all.calls[i].store(2, Ordering::Relaxed);
        }
        let nodes: Vec<(String, &'static str)> = (0..30).map(|i| (format!("node{i}"), "Conv")).collect();
        let report = all.report(&nodes);
        let listed: Vec<&str> =
            report.lines().filter_map(|l| l.split_whitespace().next()).filter(|w| w.starts_with("node")).collect();
        assert_eq!(listed.len(), 30);
        assert_eq!((listed[0], listed[29]), ("node29", "node0"));
    }
}
