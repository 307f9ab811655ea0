//! Depth-first batches: runs of per-image CNN layers executed a few images at a
//! time instead of layer by layer over the whole batch.
//!
//! At batch 8, ResNet-50's early tensors (56×56 and 28×28 maps) are 13–26 MB
//! each, more than the L3 cache holds next to the weights: layer after layer
//! streams its input from memory and writes its output back. Run image by
//! image, one image's tensors (0.8–3.2 MB) stay in cache from one layer to the
//! next, as they do at batch 1. Per node (`SMELT_CPU_PROFILE=all`, batch 8
//! against 8 × batch 1, two runs each), layer1 took 28.2 ms batched against
//! 22.1 image by image, layer2 34.5 against 31.3; layers 3 and 4, whose weights
//! outweigh one image's tensors, were faster batched (46.3 against 49.0 and 27.3
//! against 35.1 ms), since the images share each weight panel while it is in
//! cache. So a node runs image by image where one image's tensors outweigh its
//! weights, and only when the whole batch's tensors would not stay in the
//! cores' L2 caches anyway.
//!
//! A segment is a run of consecutive such nodes. Its values used only inside it
//! are planned at chunk size in one region that every chunk reuses (and keeps
//! in cache); values that cross its boundary keep their whole-batch buffers,
//! and each chunk reads or writes its slice of them.

use smelt_ir::{Graph, Node, Op, ValueId};
use std::ops::Range;

/// A run of nodes is split only if one of them has at least this many bytes
/// of batched tensors, half the L3 cache of the machines measured: below it a
/// layer's tensors stay in cache batched too. ResNet-50 at batch 2 (largest
/// node 14 MiB) was level split and batched (33.9–35.1 ms of kernels either
/// way, alternated), at batch 4 (29 MiB) split was 15% faster.
const MIN_BATCH_BYTES: usize = 16 << 20;

/// Images per chunk unless `SMELT_CPU_BATCH_SPLIT` says otherwise.
const DEFAULT_CHUNK_IMAGES: usize = 1;

/// Whether, and how finely, batches are split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitSetting {
    Off,
    /// At most this many images per chunk (the largest divisor of the batch
    /// that is not more).
    Images(usize),
}

impl SplitSetting {
    /// `SMELT_CPU_BATCH_SPLIT`: `off`, or the images per chunk (default 1).
    pub fn from_env() -> SplitSetting {
        SplitSetting::parse(std::env::var("SMELT_CPU_BATCH_SPLIT").ok().as_deref())
    }

    fn parse(setting: Option<&str>) -> SplitSetting {
        match setting.map(str::trim) {
            Some("off") | Some("0") => SplitSetting::Off,
            Some(n) => match n.parse::<usize>() {
                Ok(n) if n > 0 => SplitSetting::Images(n),
                _ => SplitSetting::Images(DEFAULT_CHUNK_IMAGES),
            },
            None => SplitSetting::Images(DEFAULT_CHUNK_IMAGES),
        }
    }
}

/// Consecutive nodes run chunk by chunk: all of them for images `0..chunk`,
/// then for the next chunk, and so on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub nodes: Range<usize>,
    pub chunks: usize,
}

/// How a segment's nodes see a value while they run one chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkView {
    /// The value's shape with the batch cut to one chunk.
    pub shape: Vec<usize>,
    /// Bytes of one chunk.
    pub len: usize,
    /// Bytes from one chunk's slice to the next: `len` for values with a
    /// whole-batch buffer, 0 for values only their segment uses, which live at
    /// chunk size in its region and are rewritten by every chunk.
    pub stride: usize,
}

/// The segments of one layout, and how their values are viewed.
#[derive(Debug, Default)]
pub struct BatchSplit {
    pub segments: Vec<Segment>,
    /// By value id; `Some` for every value a segment's node reads or writes
    /// batched.
    pub views: Vec<Option<ChunkView>>,
    /// By value id: the segment whose region holds the value (it is written
    /// and read only inside that segment).
    pub region: Vec<Option<usize>>,
}

impl BatchSplit {
    /// Plans the segments of `graph` at the value shapes `shapes`.
    pub fn plan(graph: &Graph, shapes: &[Vec<usize>], setting: SplitSetting) -> BatchSplit {
        let none = BatchSplit {
            views: vec![None; graph.values.len()],
            region: vec![None; graph.values.len()],
            ..Default::default()
        };
        let SplitSetting::Images(max_chunk) = setting else { return none };
        let roles: Vec<Option<NodeRoles>> = graph.nodes.iter().map(|n| NodeRoles::of(graph, n, shapes)).collect();
        let wanted = |i: usize| roles[i].as_ref().filter(|r| r.image_outweighs_weights());
        // Maximal runs of such nodes with the same batch, kept if they hold a
        // Conv (a run of elementwise nodes streams its data once either way)
        // and a node large enough to leave the caches batched. Smaller nodes
        // between large ones stay in the run, which would otherwise break into
        // many short ones.
        let mut candidates: Vec<(Range<usize>, usize)> = Vec::new();
        let mut i = 0;
        while i < graph.nodes.len() {
            let Some(batch) = wanted(i).map(|r| r.batch) else {
                i += 1;
                continue;
            };
            let start = i;
            while i < graph.nodes.len() && wanted(i).is_some_and(|r| r.batch == batch) {
                i += 1;
            }
            let has_conv = graph.nodes[start..i].iter().any(|n| matches!(n.op, Op::Conv(_)));
            let large = (start..i).any(|k| roles[k].as_ref().is_some_and(|r| r.batched_bytes >= MIN_BATCH_BYTES));
            if has_conv && large {
                candidates.push((start..i, batch));
            }
        }
        // A value read whole by one segment node must not be sliced by another:
        // drop segments until no value is both.
        loop {
            let mut sliced = vec![false; graph.values.len()];
            for (range, _) in &candidates {
                for i in range.clone() {
                    let r = roles[i].as_ref().expect("wanted");
                    for (&v, &b) in graph.nodes[i].inputs.iter().zip(&r.batched_inputs) {
                        if let (Some(v), true) = (v, b) {
                            sliced[v] = true;
                        }
                    }
                    for &o in &graph.nodes[i].outputs {
                        sliced[o] = true;
                    }
                }
            }
            let conflict = candidates.iter().position(|(range, _)| {
                range.clone().any(|i| {
                    let r = roles[i].as_ref().expect("wanted");
                    graph.nodes[i]
                        .inputs
                        .iter()
                        .zip(&r.batched_inputs)
                        .any(|(v, &b)| !b && v.is_some_and(|v| sliced[v]))
                })
            });
            match conflict {
                Some(k) => {
                    candidates.remove(k);
                }
                None => break,
            }
        }
        if candidates.is_empty() {
            return none;
        }
        let mut split = none;
        let producer = graph.producers();
        let mut node_segment: Vec<Option<usize>> = vec![None; graph.nodes.len()];
        for (k, (range, _)) in candidates.iter().enumerate() {
            node_segment[range.clone()].fill(Some(k));
        }
        let segment_of = |i: usize| node_segment[i];
        // A value is the region's when its segment writes it and nothing outside
        // reads it.
        let mut read_outside = vec![false; graph.values.len()];
        for &o in &graph.outputs {
            read_outside[o] = true;
        }
        for (i, node) in graph.nodes.iter().enumerate() {
            let seg = segment_of(i);
            for &v in node.inputs.iter().flatten() {
                if seg.is_none() || producer[v].and_then(segment_of) != seg {
                    read_outside[v] = true;
                }
            }
        }
        for (k, (range, batch)) in candidates.iter().cloned().enumerate() {
            let chunk = (1..=max_chunk.min(batch)).rev().find(|c| batch % c == 0).unwrap_or(1);
            for i in range.clone() {
                let node = &graph.nodes[i];
                let r = roles[i].as_ref().expect("wanted");
                let inputs = node.inputs.iter().zip(&r.batched_inputs).filter(|(_, &b)| b).filter_map(|(v, _)| *v);
                for v in inputs.chain(node.outputs.iter().copied()) {
                    let internal = producer[v].and_then(segment_of) == Some(k) && !read_outside[v];
                    let shape = &shapes[v];
                    let bytes = smelt_ir::num_elements(shape) * graph.values[v].fact.dtype.size();
                    let len = bytes / batch * chunk;
                    let mut chunk_shape = shape.clone();
                    chunk_shape[0] = chunk;
                    split.views[v] =
                        Some(ChunkView { shape: chunk_shape, len, stride: if internal { 0 } else { len } });
                    if internal {
                        split.region[v] = Some(k);
                    }
                }
            }
            split.segments.push(Segment { nodes: range, chunks: batch / chunk });
        }
        split
    }

    /// The segment that starts at node `index`.
    pub fn starting_at(&self, index: usize) -> Option<&Segment> {
        // Segments are in node order: a search, not a scan, on every node of a run.
        let k = self.segments.binary_search_by_key(&index, |s| s.nodes.start).ok()?;
        Some(&self.segments[k])
    }

    /// Where chunk `chunk` of value `v` lies within the value's bytes, its
    /// length and its shape, when segment nodes see `v` sliced.
    pub fn chunk(&self, v: usize, chunk: usize) -> Option<(usize, usize, &[usize])> {
        self.views[v].as_ref().map(|s| (chunk * s.stride, s.len, s.shape.as_slice()))
    }
}

/// How a node would run image by image: its batch, which inputs carry it, and
/// the bytes that decide whether splitting pays.
struct NodeRoles {
    batch: usize,
    /// By input position: sliced per chunk (else read whole: weights, biases,
    /// broadcast operands).
    batched_inputs: Vec<bool>,
    /// The batched inputs and the outputs, whole batch.
    batched_bytes: usize,
    /// The constant inputs: weights a batched run shares between its images.
    weight_bytes: usize,
}

impl NodeRoles {
    /// `None` unless every image's outputs depend only on that image's inputs
    /// and the node's kernel takes any batch: convolutions with constant
    /// weights, pooling, inference normalisation and elementwise ops.
    fn of(graph: &Graph, node: &Node, shapes: &[Vec<usize>]) -> Option<NodeRoles> {
        let out = shapes.get(*node.outputs.first()?)?;
        let batch = *out.first()?;
        if batch < 2 || node.outputs.iter().any(|&o| shapes[o].first() != Some(&batch)) {
            return None;
        }
        let rank = out.len();
        let carries_batch = |v: ValueId| shapes[v].len() == rank && shapes[v][0] == batch;
        let constant = |v: &Option<ValueId>| v.is_none_or(|v| graph.constant(v).is_some());
        let batched_inputs: Vec<bool> = match &node.op {
            // X and the fused residual carry the batch; weights and bias must be
            // constants (a computed weight of `batch` rows is not a batch).
            Op::Conv(_) => {
                if !node.inputs.iter().skip(1).take(2).all(constant) {
                    return None;
                }
                (0..node.inputs.len()).map(|k| k == 0 || k == 3).collect()
            }
            // MaxPool's optional indices count positions across the batch.
            Op::MaxPool(_) if node.outputs.len() > 1 => return None,
            Op::MaxPool(_)
            | Op::AveragePool(_)
            | Op::GlobalAveragePool
            | Op::GlobalMaxPool
            | Op::BatchNormalization { .. }
            | Op::Unary(_)
            | Op::Clip => (0..node.inputs.len()).map(|k| k == 0).collect(),
            // Operands of the output's rank and batch are sliced; the rest
            // broadcast over it and are read whole.
            Op::Binary(_) => node.inputs.iter().map(|v| v.is_some_and(carries_batch)).collect(),
            _ => return None,
        };
        let mut batched_bytes = 0;
        let mut weight_bytes = 0;
        let bytes = |v: ValueId| smelt_ir::num_elements(&shapes[v]) * graph.values[v].fact.dtype.size();
        for (v, &b) in node.inputs.iter().zip(&batched_inputs) {
            match v {
                Some(v) if b => {
                    if !carries_batch(*v) {
                        return None;
                    }
                    batched_bytes += bytes(*v);
                }
                Some(v) if graph.constant(*v).is_some() => weight_bytes += bytes(*v),
                _ => {}
            }
        }
        batched_bytes += node.outputs.iter().map(|&o| bytes(o)).sum::<usize>();
        Some(NodeRoles { batch, batched_inputs, batched_bytes, weight_bytes })
    }

    /// Whether one image's tensors outweigh the weights that a batched run
    /// would share between its images.
    fn image_outweighs_weights(&self) -> bool {
        self.batched_bytes / self.batch > self.weight_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smelt_ir::{AutoPad, BinaryOp, ConvAttrs, DType, Fact, PoolAttrs, Shape, Tensor, UnaryOp};

    /// A graph under construction with every value's shape given (as layouts
    /// resolve them), so plans can be made without shape inference.
    struct Builder {
        graph: Graph,
        shapes: Vec<Vec<usize>>,
    }

    impl Builder {
        fn new() -> Builder {
            Builder { graph: Graph::new(17), shapes: Vec::new() }
        }

        fn input(&mut self, shape: &[usize]) -> ValueId {
            let v = self.value(shape);
            self.graph.inputs.push(v);
            v
        }

        fn value(&mut self, shape: &[usize]) -> ValueId {
            let v = self.graph.add_value(format!("v{}", self.shapes.len()), Fact::new(DType::F32, Shape::fixed(shape)));
            self.shapes.push(shape.to_vec());
            v
        }

        fn weight(&mut self, shape: &[usize]) -> ValueId {
            let n = shape.iter().product();
            let v = self
                .graph
                .add_constant(format!("w{}", self.shapes.len()), Tensor::from_vec(shape, vec![0.5f32; n]).unwrap());
            self.shapes.push(shape.to_vec());
            v
        }

        fn node(&mut self, op: Op, inputs: &[ValueId], outputs: &[&[usize]]) -> Vec<ValueId> {
            let outs: Vec<ValueId> = outputs.iter().map(|s| self.value(s)).collect();
            let name = format!("n{}", self.graph.nodes.len());
            self.graph.add_node(name, op, inputs.iter().map(|&v| Some(v)).collect(), outs.clone());
            outs
        }

        /// A Conv with constant weights `[c_out, c_in, k, k]` and "same" padding.
        fn conv(&mut self, x: ValueId, c_out: usize, k: usize, out: &[usize]) -> ValueId {
            let c_in = self.shapes[x][1];
            let w = self.weight(&[c_out, c_in, k, k]);
            self.node(Op::Conv(conv_attrs(k / 2)), &[x, w], &[out])[0]
        }

        fn plan(&mut self, outputs: &[ValueId], setting: SplitSetting) -> BatchSplit {
            self.graph.outputs = outputs.to_vec();
            BatchSplit::plan(&self.graph, &self.shapes, setting)
        }
    }

    fn conv_attrs(pad: usize) -> ConvAttrs {
        ConvAttrs {
            kernel_shape: None,
            strides: vec![1, 1],
            pads: vec![pad; 4],
            dilations: vec![1, 1],
            group: 1,
            auto_pad: AutoPad::NotSet,
            activation: None,
        }
    }

    fn pool(window: usize) -> PoolAttrs {
        PoolAttrs {
            kernel_shape: vec![window; 2],
            strides: vec![window; 2],
            pads: vec![0; 4],
            dilations: vec![1, 1],
            auto_pad: AutoPad::NotSet,
            ceil_mode: false,
            count_include_pad: false,
            storage_order: 0,
        }
    }

    /// `batch` images of 16 × 256 × 256 (4 MiB each): Conv 3×3, Relu and an
    /// 8×8 MaxPool, whose batched tensors outweigh their weights, then a Conv
    /// whose weights (1.9 MiB) outweigh an image's tensors (1.1 MiB).
    fn stem(b: &mut Builder, batch: usize) -> (ValueId, ValueId) {
        let x = b.input(&[batch, 16, 256, 256]);
        let y = b.conv(x, 16, 3, &[batch, 16, 256, 256]);
        let y = b.node(Op::Unary(UnaryOp::Relu), &[y], &[&[batch, 16, 256, 256]])[0];
        let pooled = b.node(Op::MaxPool(pool(8)), &[y], &[&[batch, 16, 32, 32]])[0];
        let out = b.conv(pooled, 256, 11, &[batch, 256, 32, 32]);
        (pooled, out)
    }

    #[test]
    fn layers_whose_images_outweigh_their_weights_form_a_segment() {
        let mut b = Builder::new();
        let (pooled, out) = stem(&mut b, 4);
        let split = b.plan(&[out], SplitSetting::Images(1));
        assert_eq!(split.segments, vec![Segment { nodes: 0..3, chunks: 4 }]);
        let x = b.graph.inputs[0];
        let (conv, relu) = (b.graph.nodes[0].outputs[0], b.graph.nodes[1].outputs[0]);
        // The input and the pooled maps cross the boundary: whole-batch buffers,
        // sliced by chunk. The Conv's and Relu's outputs live in the region.
        let image = 16 * 256 * 256 * 4;
        assert_eq!(split.views[x], Some(ChunkView { shape: vec![1, 16, 256, 256], len: image, stride: image }));
        assert_eq!(split.views[conv], Some(ChunkView { shape: vec![1, 16, 256, 256], len: image, stride: 0 }));
        assert_eq!(split.views[pooled].as_ref().map(|v| v.stride), Some(16 * 32 * 32 * 4));
        assert_eq!(split.views[out], None);
        assert_eq!((split.region[conv], split.region[relu], split.region[pooled]), (Some(0), Some(0), None));
        assert_eq!(split.starting_at(0).map(|s| s.nodes.clone()), Some(0..3));
        assert!(split.starting_at(1).is_none());
        // A graph output keeps a whole-batch buffer.
        let split = b.plan(&[relu, out], SplitSetting::Images(1));
        assert_eq!(split.segments, vec![Segment { nodes: 0..3, chunks: 4 }]);
        assert_eq!((split.region[conv], split.region[relu]), (Some(0), None));
        assert_eq!(split.views[relu].as_ref().map(|v| v.stride), Some(image));
    }

    #[test]
    fn chunks_divide_the_batch_and_off_splits_nothing() {
        let mut b = Builder::new();
        let (_, out) = stem(&mut b, 6);
        assert_eq!(b.plan(&[out], SplitSetting::Images(4)).segments[0].chunks, 2, "3 images per chunk");
        assert_eq!(b.plan(&[out], SplitSetting::Images(6)).segments[0].chunks, 1);
        assert!(b.plan(&[out], SplitSetting::Off).segments.is_empty());
        // Batch 1 has nothing to split; small tensors stay in cache batched.
        let mut b = Builder::new();
        let (_, out) = stem(&mut b, 1);
        assert!(b.plan(&[out], SplitSetting::Images(1)).segments.is_empty());
        let mut b = Builder::new();
        let x = b.input(&[2, 16, 128, 128]);
        let y = b.conv(x, 16, 3, &[2, 16, 128, 128]);
        assert!(b.plan(&[y], SplitSetting::Images(1)).segments.is_empty(), "4 MiB in all");
    }

    #[test]
    fn nodes_that_mix_images_are_not_split() {
        // MaxPool's indices number positions across the batch.
        let mut b = Builder::new();
        let x = b.input(&[4, 16, 256, 256]);
        let y = b.conv(x, 16, 3, &[4, 16, 256, 256]);
        let outs = b.node(Op::MaxPool(pool(2)), &[y], &[&[4, 16, 128, 128], &[4, 16, 128, 128]]);
        assert_eq!(b.plan(&outs, SplitSetting::Images(1)).segments, vec![Segment { nodes: 0..1, chunks: 4 }]);
        // A Conv whose weights are computed is not split, and a run of
        // elementwise nodes alone gains nothing.
        let mut b = Builder::new();
        let x = b.input(&[4, 16, 256, 256]);
        let w = b.input(&[4, 16, 1, 1]);
        let y = b.node(Op::Conv(conv_attrs(0)), &[x, w], &[&[4, 4, 256, 256]])[0];
        let r = b.node(Op::Unary(UnaryOp::Relu), &[x], &[&[4, 16, 256, 256]])[0];
        assert!(b.plan(&[y, r], SplitSetting::Images(1)).segments.is_empty());
    }

    #[test]
    fn a_value_sliced_in_one_node_and_read_whole_in_another_drops_the_segment() {
        // `b` [4, 512, 512] is a Relu's batched output, but the Add broadcasts
        // it over [4, 4, 512, 512] as one whole operand (its first axis is
        // channels there).
        let mut b = Builder::new();
        let x = b.input(&[4, 4, 512, 512]);
        let y = b.input(&[4, 512, 512]);
        let a = b.conv(x, 4, 3, &[4, 4, 512, 512]);
        let r = b.node(Op::Unary(UnaryOp::Relu), &[y], &[&[4, 512, 512]])[0];
        let sum = b.node(Op::Binary(BinaryOp::Add), &[a, r], &[&[4, 4, 512, 512]])[0];
        let split = b.plan(&[sum], SplitSetting::Images(1));
        assert!(split.segments.is_empty(), "{:?}", split.segments);
    }

    #[test]
    fn the_setting_reads_off_or_images() {
        assert_eq!(SplitSetting::parse(None), SplitSetting::Images(1));
        assert_eq!(SplitSetting::parse(Some("off")), SplitSetting::Off);
        assert_eq!(SplitSetting::parse(Some("0")), SplitSetting::Off);
        assert_eq!(SplitSetting::parse(Some("2")), SplitSetting::Images(2));
        assert_eq!(SplitSetting::parse(Some("many")), SplitSetting::Images(1));
    }
}
