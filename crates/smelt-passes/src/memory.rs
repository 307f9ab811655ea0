//! Memory planning: one arena per plan, with byte offsets chosen so that buffers
//! live at the same time never share bytes, and buffers that are not do.

use smelt_ir::Graph;

/// Every offset in the arena is a multiple of this: a cache line on the CPU, and
/// more than any GPU's minimum storage-buffer offset alignment needs.
pub const ARENA_ALIGNMENT: usize = 64;

/// One buffer to place: its size and the steps (node indices) during which it must
/// hold its contents, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferLifetime {
    pub size: usize,
    pub first_use: usize,
    pub last_use: usize,
}

impl BufferLifetime {
    fn overlaps(&self, other: &BufferLifetime) -> bool {
        self.first_use <= other.last_use && other.first_use <= self.last_use
    }
}

/// Where each buffer lives in the arena.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Byte offset of each buffer, in the order the buffers were given.
    pub offsets: Vec<usize>,
    /// Arena size: the end of the highest-placed buffer.
    pub peak_bytes: usize,
    /// What giving every buffer its own aligned slot would take: the sum of the
    /// sizes, each rounded up to [`ARENA_ALIGNMENT`].
    pub naive_bytes: usize,
}

fn align(n: usize) -> usize {
    n.div_ceil(ARENA_ALIGNMENT) * ARENA_ALIGNMENT
}

/// Assigns arena offsets to `buffers`.
///
/// Largest buffers are placed first (they are the hardest to fit); each goes into
/// the smallest gap, between buffers already placed whose lifetimes overlap its own,
/// that holds it, or above all of them when no gap does. Ties keep the input order,
/// so the plan is deterministic.
pub fn plan_memory(buffers: &[BufferLifetime]) -> MemoryPlan {
    let mut order: Vec<usize> = (0..buffers.len()).collect();
    order.sort_by(|&a, &b| buffers[b].size.cmp(&buffers[a].size).then(a.cmp(&b)));

    let mut offsets = vec![0; buffers.len()];
    // Placed buffers as (offset, aligned end, index).
    let mut placed: Vec<(usize, usize, usize)> = Vec::with_capacity(buffers.len());
    let mut peak_bytes = 0;
    for index in order {
        let buffer = &buffers[index];
        if buffer.size == 0 {
            // Occupies no bytes, so it can conflict with nothing.
            continue;
        }
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&(_, _, other)| buffers[other].overlaps(buffer))
            .map(|&(start, end, _)| (start, end))
            .collect();
        busy.sort_unstable();

        let needed = align(buffer.size);
        let mut best: Option<(usize, usize)> = None; // (gap size, offset)
        let mut cursor = 0;
        for &(start, end) in &busy {
            if start >= cursor + needed {
                let gap = start - cursor;
                if best.is_none_or(|(best_gap, _)| gap < best_gap) {
                    best = Some((gap, cursor));
                }
            }
            cursor = cursor.max(end);
        }
        let offset = best.map_or(cursor, |(_, offset)| offset);

        offsets[index] = offset;
        placed.push((offset, offset + needed, index));
        peak_bytes = peak_bytes.max(offset + buffer.size);
    }
    let naive_bytes = buffers.iter().map(|b| align(b.size)).sum();
    MemoryPlan { offsets, peak_bytes, naive_bytes }
}

/// The steps during which each value of `graph` must be held, by value id: from the
/// node that produces it to the last node that reads it (graph outputs: to the last
/// node). `None` for values the arena does not hold: constants, graph inputs, and
/// values nothing produces.
///
/// A value produced but never read (an unused optional output) still lives for the
/// step that writes it.
pub fn lifetimes(graph: &Graph) -> Vec<Option<(usize, usize)>> {
    let mut spans: Vec<Option<(usize, usize)>> = vec![None; graph.values.len()];
    for (step, node) in graph.nodes.iter().enumerate() {
        for &output in &node.outputs {
            spans[output] = Some((step, step));
        }
        for &input in node.inputs.iter().flatten() {
            if let Some((_, last)) = &mut spans[input] {
                *last = step;
            }
        }
    }
    let end = graph.nodes.len().saturating_sub(1);
    for &output in &graph.outputs {
        if let Some((_, last)) = &mut spans[output] {
            *last = end;
        }
    }
    for &input in &graph.inputs {
        spans[input] = None;
    }
    for (span, value) in spans.iter_mut().zip(&graph.values) {
        if value.fact.constant.is_some() {
            *span = None;
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;
    use smelt_ir::{DType, Fact, Op, Shape, Tensor, UnaryOp};

    /// SplitMix64: a tiny deterministic generator so the property tests repeat exactly.
    struct SplitMix(u64);

    impl SplitMix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn random_buffers(rng: &mut SplitMix, count: usize, steps: usize) -> Vec<BufferLifetime> {
        (0..count)
            .map(|_| {
                let first_use = rng.below(steps);
                let last_use = first_use + rng.below(steps - first_use);
                // Mix tiny, unaligned and large sizes, and some empty buffers.
                let size = match rng.below(4) {
                    0 => rng.below(8),
                    1 => rng.below(200),
                    _ => rng.below(1 << 16),
                };
                BufferLifetime { size, first_use, last_use }
            })
            .collect()
    }

    fn check_plan(buffers: &[BufferLifetime], plan: &MemoryPlan) {
        assert_eq!(plan.offsets.len(), buffers.len());
        for (i, (a, &offset_a)) in buffers.iter().zip(&plan.offsets).enumerate() {
            assert_eq!(offset_a % ARENA_ALIGNMENT, 0, "buffer {i} is misaligned");
            assert!(offset_a + a.size <= plan.peak_bytes, "buffer {i} ends past the peak");
            for (j, (b, &offset_b)) in buffers.iter().zip(&plan.offsets).enumerate().skip(i + 1) {
                let share_bytes = offset_a < offset_b + b.size && offset_b < offset_a + a.size;
                assert!(
                    !(a.overlaps(b) && share_bytes),
                    "buffers {i} {a:?} at {offset_a} and {j} {b:?} at {offset_b} are live together and overlap"
                );
            }
        }
        let last_step = buffers.iter().map(|b| b.last_use).max().unwrap_or(0);
        let max_live = (0..=last_step)
            .map(|step| buffers.iter().filter(|b| (b.first_use..=b.last_use).contains(&step)).map(|b| b.size).sum())
            .max()
            .unwrap_or(0);
        assert!(plan.peak_bytes >= max_live, "peak {} below the {max_live} bytes live at once", plan.peak_bytes);
        assert!(plan.peak_bytes <= plan.naive_bytes, "peak {} above naive {}", plan.peak_bytes, plan.naive_bytes);
    }

    #[test]
    fn random_lifetimes_never_share_live_bytes() {
        let mut rng = SplitMix(0x5eed);
        for round in 0..300 {
            let count = 1 + rng.below(60);
            let steps = 1 + rng.below(40);
            let buffers = random_buffers(&mut rng, count, steps);
            let plan = plan_memory(&buffers);
            check_plan(&buffers, &plan);
            assert_eq!(plan, plan_memory(&buffers), "round {round}: the plan is not deterministic");
        }
    }

    #[test]
    fn a_chain_reuses_memory() {
        // Each buffer is read by the next step only, as in a chain of unary ops:
        // two slots suffice however long the chain.
        let buffers: Vec<_> = (0..10).map(|i| BufferLifetime { size: 1000, first_use: i, last_use: i + 1 }).collect();
        let plan = plan_memory(&buffers);
        check_plan(&buffers, &plan);
        assert_eq!(plan.peak_bytes, 1024 + 1000);
        assert_eq!(plan.naive_bytes, 10 * 1024);
    }

    #[test]
    fn best_fit_picks_the_smallest_gap_that_holds_the_buffer() {
        // Long-lived a, c, e with short-lived b and d between them: once b and d are
        // dead (step 5), there is a 256-byte hole where b was and a 128-byte hole
        // where d was. A 64-byte buffer at step 5 must take the smaller hole.
        let long = |size| BufferLifetime { size, first_use: 0, last_use: 9 };
        let short = |size| BufferLifetime { size, first_use: 0, last_use: 0 };
        let buffers = [
            long(1000),
            short(256),
            long(200),
            short(128),
            long(100),
            BufferLifetime { size: 64, first_use: 5, last_use: 5 },
        ];
        let plan = plan_memory(&buffers);
        check_plan(&buffers, &plan);
        assert_eq!(plan.offsets, [0, 1024, 1280, 1536, 1664, 1536]);
        assert_eq!(plan.peak_bytes, 1764);
    }

    #[test]
    fn empty_input_gives_an_empty_plan() {
        let plan = plan_memory(&[]);
        assert_eq!(plan, MemoryPlan { offsets: vec![], peak_bytes: 0, naive_bytes: 0 });
    }

    #[test]
    fn lifetimes_follow_node_order() {
        // x → a → b → y(output), plus c = f(a) read by nothing, and a constant k.
        let mut g = smelt_ir::Graph::new(17);
        let fact = Fact::new(DType::F32, Shape::fixed(&[4]));
        let [x, a, b, c, y] = ["x", "a", "b", "c", "y"].map(|n| g.add_value(n, fact.clone()));
        let k = g.add_constant("k", Tensor::from_vec(&[4], vec![1.0f32; 4]).unwrap());
        g.inputs.push(x);
        g.outputs.extend([a, y]);
        g.add_node("n0", Op::Unary(UnaryOp::Relu), vec![Some(x)], vec![a]);
        g.add_node("n1", Op::Binary(smelt_ir::BinaryOp::Add), vec![Some(a), Some(k)], vec![b]);
        g.add_node("n2", Op::Unary(UnaryOp::Exp), vec![Some(a)], vec![c]);
        g.add_node("n3", Op::Unary(UnaryOp::Neg), vec![Some(b)], vec![y]);

        let spans = lifetimes(&g);
        assert_eq!(spans[x], None);
        assert_eq!(spans[k], None);
        assert_eq!(spans[a], Some((0, 3)), "a graph output lives to the end");
        assert_eq!(spans[b], Some((1, 3)));
        assert_eq!(spans[c], Some((2, 2)));
        assert_eq!(spans[y], Some((3, 3)));
    }
}
