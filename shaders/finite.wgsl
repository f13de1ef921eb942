// finite.wgsl: the non-finite check of a training step's gradients, shared by the kernels
// that produce gradients (matmul.wgsl, reduce.wgsl: each checks what it stores) and by
// data.wgsl's check_finite (which reads the gradients no such kernel produced).
// Joined after step.wgsl; the including shader declares `step: Step` and
// `astatus: array<atomic<u32>>`, the training status (u32 [4]: [0] the first step + 1 with a
// non-finite loss or gradient, 0 while all are finite; [1] what it was: 0xFFFFFFFF the loss,
// 0xFFFFFFFE - p the gradient of parameter p; [2] the policy, 1 = skip bad steps; [3] the
// last bad step + 1). Under the test hook (`test_poison`), element 0 of every checked
// gradient counts as non-finite.

// What `step.poison` asks of a step under the test hook: a NaN loss, or a non-finite first
// checked gradient (`Sequential::inject_non_finite`).
const POISON_LOSS: u32 = 1u;
const POISON_GRADIENT: u32 = 2u;

// Whether the test hook poisons this step's `kind` (the one read of `step.poison`). Always
// false unless the pipeline was made with TEST_HOOKS (step.wgsl), so the branch is compiled
// out of every user's pipeline.
fn test_poison(kind: u32) -> bool {
    if (TEST_HOOKS) {
        return step.poison == kind;
    }
    return false;
}

fn all_finite(v: vec4<f32>) -> bool {
    return all((bitcast<vec4<u32>>(v) & vec4<u32>(0x7F800000u)) != vec4<u32>(0x7F800000u));
}

// Whether lanes 0 .. used - 1 of v are finite (the others are padding).
fn lanes_finite(v: vec4<f32>, used: u32) -> bool {
    let lane = vec4<u32>(0u, 1u, 2u, 3u);
    let ok = (bitcast<vec4<u32>>(v) & vec4<u32>(0x7F800000u)) != vec4<u32>(0x7F800000u);
    return all(ok | (lane >= vec4<u32>(used)));
}

// Records a non-finite value of this step with `code` (the largest code wins: the lowest
// parameter). The step becomes the first bad one unless an earlier step, or this step's
// loss, already is; atomics make the result independent of the order in which invocations
// and kernels find bad values.
fn report_non_finite(code: u32) {
    let now = step.step + 1u;
    var first = atomicLoad(&astatus[0]);
    while (first == 0u) {
        let r = atomicCompareExchangeWeak(&astatus[0], 0u, now);
        if (r.exchanged) {
            first = now;
        } else {
            first = r.old_value;
        }
    }
    if (first == now) {
        atomicMax(&astatus[1], code);
    }
    atomicStore(&astatus[3], now);
}
