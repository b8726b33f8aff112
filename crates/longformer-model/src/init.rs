//! HuggingFace's random initialization (`LongformerPreTrainedModel._init_weights`): linear and
//! embedding weights from `N(0, initializer_range²)`, biases 0, LayerNorm scales 1 and shifts 0,
//! and the padding rows of the word and position embeddings 0. Burn's own defaults (Kaiming
//! uniform linears, `N(0, 1)` embeddings) train a post-LayerNorm transformer from scratch
//! much worse.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Distribution, Tensor};

/// Reads every parameter of `module` once, which draws those Burn initializes lazily (at their
/// first read) now: a seed set just before fixes them whatever runs later, and clones made
/// afterwards no longer share a pending initialization.
pub fn draw_lazy_params<M: Module>(module: &M) {
    struct Read;
    impl ModuleVisitor for Read {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let _ = param.val();
        }
    }
    module.visit(&mut Read);
}

/// Re-draws the weights of `module` as HF does (see the module docs). `padding_row` is zeroed in
/// every embedding table that has that many rows or more except `token_type_embeddings`.
pub fn hf_initialization<M: Module>(module: M, std: f64, padding_row: usize) -> M {
    module.map(&mut HfInit {
        std,
        padding_row,
        path: Vec::new(),
    })
}

struct HfInit {
    std: f64,
    padding_row: usize,
    path: Vec<String>,
}

impl ModuleMapper for HfInit {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(name) = self.path.last().map(String::as_str) else {
            return param;
        };
        let embedding = self
            .path
            .iter()
            .any(|p| p == "word_embeddings" || p == "position_embeddings");
        let (std, padding_row) = (self.std, self.padding_row);
        // A parameter built initialized (`Param::from_tensor`) is mapped at once, and a fresh
        // tensor does not require gradients: it keeps the old value's setting, or it would no
        // longer train. (A lazy parameter's mapper sees an untracked value, and the gradient
        // setting is applied after it.)
        let keep_tracking = |t: &Tensor<D>, fresh: Tensor<D>| {
            if t.is_require_grad() {
                fresh.require_grad()
            } else {
                fresh
            }
        };
        match name {
            "weight" => param.init_mapper(move |t| {
                let fresh = Tensor::random(t.shape(), Distribution::Normal(0.0, std), &t.device());
                let fresh = if embedding && D == 2 && t.dims()[0] > padding_row {
                    let [rows, width] = [t.dims()[0], t.dims()[1]];
                    fresh
                        .reshape([rows, width])
                        .slice_fill([padding_row..padding_row + 1, 0..width], 0.0)
                        .reshape(t.shape())
                } else {
                    fresh
                };
                keep_tracking(&t, fresh)
            }),
            "bias" => param.init_mapper(move |t| keep_tracking(&t, t.zeros_like())),
            _ => param,
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use crate::config::LongformerConfig;

    #[test]
    fn random_weights_follow_hf_initialization() {
        let device = Device::flex();
        let config = LongformerConfig::tiny(300).with_initializer_range(0.05);
        let model = config.init(&device);
        let words = model.embeddings.word_embeddings.weight.val();
        let std = words.clone().var(0).mean().sqrt().into_scalar::<f32>();
        assert!((std - 0.05).abs() < 0.005, "embedding std {std}");
        let pad = words.slice([1..2, 0..64]).abs().max().into_scalar::<f32>();
        assert_eq!(pad, 0.0, "the padding row is zero");
        let query = &model.encoder.layer[0].attention.self_attn.query;
        let weight_std = query.weight.val().var(0).mean().sqrt().into_scalar::<f32>();
        assert!((weight_std - 0.05).abs() < 0.01, "linear std {weight_std}");
        let bias = query
            .bias
            .as_ref()
            .unwrap()
            .val()
            .abs()
            .max()
            .into_scalar::<f32>();
        assert_eq!(bias, 0.0);
        let gamma = model.embeddings.layer_norm.gamma.val();
        assert_eq!(gamma.clone().min().into_scalar::<f32>(), 1.0);
        assert_eq!(gamma.max().into_scalar::<f32>(), 1.0);
    }
}
