//! [`ExactGeluOps`] on the CubeCL backend (wgpu, vulkan): the trait's default bodies, Burn's
//! float ops (its `gelu` is the exact one; the derivative written out, `Φ(x) + x · φ(x)`).

use burn_cubecl::CubeBackend;

use super::ops::ExactGeluOps;

impl ExactGeluOps for CubeBackend {}
