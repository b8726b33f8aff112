//! [`LayerNormOps`] on the CubeCL backend (wgpu, vulkan): the trait's default bodies, Burn's
//! float ops (fused by Burn's fusion around them).

use burn_cubecl::CubeBackend;

use super::ops::LayerNormOps;

impl LayerNormOps for CubeBackend {}
