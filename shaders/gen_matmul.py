#!/usr/bin/env python3
"""Writes the register-tile loops of matmul.wgsl, matmul_subgroup.wgsl, matmul_tiled.wgsl
and conv2d_subgroup.wgsl.

Each entry point holds a tile of up to 32 rows x 2 vec4 columns in plain variables with
constant names; the override constants TM and TN4 switch rows and column groups on and off
through `if (TM > ..)` tests that are constant once the pipeline is specialised, so the
driver deletes the unused ones. (Arrays indexed in loops over TM were tried first: lavapipe
did not unroll them and kept the accumulators in memory, 3-4x slower.)

Run from the repository root after changing the shape of the loops:
    python3 shaders/gen_matmul.py
It rewrites the text between the `// BEGIN GENERATED` and `// END GENERATED` lines (each
file says so in its header). With --check it writes nothing and exits 1 when a file differs
from what it would write (for CI):
    python3 shaders/gen_matmul.py --check
"""
import re
import sys

MAX_ROWS = 32  # TM <= 32: 8 blocks of 4 rows
MAX_G = 2  # TN4 <= 2
PLAIN_ROWS = 8  # matmul_forward: TM <= 8

def decls(rows):
    o = []
    for r in range(rows):
        o.append("    " + " ".join(f"var acc{r}_{g} = vec4<f32>(0.0);" for g in range(MAX_G)))
    return o

def b_loads():
    return [
        "        let bb0 = b_block(kk, col0);",
        "        var bb1 = bb0;",
        "        if (TN4 > 1u) {",
        "            bb1 = b_block(kk, col0 + 4u);",
        "        }",
    ]

def block_update(p, src, indent):
    """Accumulates A block p (a mat4x4 expression already bound to `ab`)."""
    o = []
    for c in range(4):
        r = 4 * p + c
        for g in range(MAX_G):
            line = (f"acc{r}_{g} += bb{g}[0] * ab[{c}].x + bb{g}[1] * ab[{c}].y"
                    f" + bb{g}[2] * ab[{c}].z + bb{g}[3] * ab[{c}].w;")
            if g == 0:
                o.append(indent + line)
            else:
                o.append(indent + f"if (TN4 > {g}u) {{")
                o.append(indent + "    " + line)
                o.append(indent + "}")
    return o

def stores(rows):
    # The accumulators go to an array and one loop with a run-time trip count stores them:
    # 64 inlined copies of the epilogue (Philox included) made lavapipe spend tens of
    # seconds compiling one variant.
    o = ["    var tile: array<vec4<f32>, 64>;"]
    for r in range(rows):
        o.append("    " + " ".join(f"tile[{2 * r + g}] = acc{r}_{g};" for g in range(MAX_G)))
    o.append("    store_tile(row0, col0, &tile);")
    return o

def plain():
    # matmul_forward serves adapters without subgroups: tiles of at most 8 rows (more
    # accumulators than registers only pay off when A loads are shared).
    rows = PLAIN_ROWS
    o = decls(rows)
    o.append("    let steps = (params.k + 3u) >> 2u;")
    o.append("    for (var s = 0u; s < steps; s++) {")
    o.append("        let kk = s * 4u;")
    o += b_loads()
    for p in range(rows // 4):
        o.append(f"        if (TM > {4 * p}u) {{")
        o.append(f"            let ab = a_block(row0 + {4 * p}u, kk);")
        o += block_update(p, "ab", "            ")
        o.append("        }")
    o.append("    }")
    o += stores(rows)
    return o

def subgroup():
    o = decls(MAX_ROWS)
    o.append("    // A blocks a_next loaded ahead (8 k at a time where it can).")
    o.append("    var a_held = array<mat4x4<f32>, 2>();")
    o.append("    let steps = (params.k + 3u) >> 2u;")
    o.append("    for (var s = 0u; s < steps; s++) {")
    o.append("        let kk = s * 4u;")
    o.append("        // This lane's B blocks (b_pair: one 64-bit load per k where it can).")
    o.append("        let bp = b_pair(kk, col0);")
    o.append("        let bb0 = bp[0];")
    o.append("        let bb1 = bp[1];")
    o.append("        // Lane l reads A block l (rows row0 + 4l ..); lanes past TM / 4 read nothing.")
    o.append("        var mine = mat4x4<f32>();")
    o.append("        if (lane < TM / 4u) {")
    o.append("            mine = a_next(row0 + 4u * lane, kk, &a_held);")
    o.append("        }")
    for p in range(MAX_ROWS // 4):
        o.append(f"        if (TM > {4 * p}u) {{")
        o.append(f"            let ab = mat4x4<f32>(subgroupBroadcast(mine[0], {p}u), subgroupBroadcast(mine[1], {p}u), "
                 f"subgroupBroadcast(mine[2], {p}u), subgroupBroadcast(mine[3], {p}u));")
        o += block_update(p, "ab", "            ")
        o.append("        }")
    o.append("    }")
    o += stores(MAX_ROWS)
    return o

def tiled():
    # matmul_forward_tiled: the register tile of matmul_forward (at most 8 rows), its
    # operands read from workgroup memory, one stage of TILE_BK k at a time.
    rows = PLAIN_ROWS
    o = decls(rows)
    o.append("    for (var s = 0u; s < stages; s++) {")
    o.append("        // Nobody still reads the previous stage; then this one is in place.")
    o.append("        workgroupBarrier();")
    o.append("        stage_store(sb, ra, rb);")
    o.append("        workgroupBarrier();")
    o.append("        // The next stage's blocks, loaded while this one is summed.")
    o.append("        if (s + 1u < stages) {")
    o.append("            let kn = (s + 1u) * TILE_BK;")
    o.append("            if (sb.has_a) {")
    o.append("                ra = a_block(bm0 + sb.a_row, kn + 4u * sb.a_q);")
    o.append("            }")
    o.append("            if (sb.has_b) {")
    o.append("                rb = b_block(kn + 4u * sb.b_q, bn0 + sb.b_col);")
    o.append("            }")
    o.append("        }")
    o.append("        for (var q = 0u; q < TILE_BK / 4u; q++) {")
    o.append("            // A group of four k wholly past k is skipped, as the unstaged kernels do.")
    o.append("            if (s * TILE_BK + 4u * q < params.k) {")
    o.append("                let bb0 = tile_b(q, lid.x);")
    o.append("                var bb1 = bb0;")
    o.append("                if (TN4 > 1u) {")
    o.append("                    bb1 = tile_b(q, lid.x + WG);")
    o.append("                }")
    for p in range(rows // 4):
        o.append(f"                if (TM > {4 * p}u) {{")
        o.append(f"                    let ab = tile_a(lid.y * TM + {4 * p}u, q);")
        o += block_update(p, "ab", "                    ")
        o.append("                }")
    o.append("            }")
    o.append("        }")
    o.append("    }")
    o += [l.replace("store_tile(", "store_tile_tiled(") for l in stores(rows)]
    return o

def splice(text, lines):  # the one unnamed region of a file
    pat = re.compile(r"(// BEGIN GENERATED by[^\n]*\n).*?(\s*// END GENERATED\n)", re.S)
    assert pat.search(text)
    return pat.sub(lambda m: m.group(1) + "\n".join(lines) + m.group(2), text)


def conv_update_lines(indent):
    """The broadcasts and accumulator updates of one K step of the conv kernels: lane l holds
    A block l in `mine`, `bb0` is this lane's B block (TN4 = 1)."""
    o = []
    for p in range(MAX_ROWS // 4):
        o.append(indent + f"var ab{p} = mat4x4<f32>(subgroupBroadcast(mine[0], {p}u), subgroupBroadcast(mine[1], {p}u), "
                 f"subgroupBroadcast(mine[2], {p}u), subgroupBroadcast(mine[3], {p}u));")
        # HALF: the upper half's block p is lane 8 + p's.
        o.append(indent + "if (HALF) {")
        o.append(indent + f"    let hi = mat4x4<f32>(subgroupBroadcast(mine[0], {p + 8}u), subgroupBroadcast(mine[1], {p + 8}u), "
                 f"subgroupBroadcast(mine[2], {p + 8}u), subgroupBroadcast(mine[3], {p + 8}u));")
        o.append(indent + f"    ab{p} = mat4x4<f32>(select(ab{p}[0], hi[0], pl.upper), select(ab{p}[1], hi[1], pl.upper), "
                 f"select(ab{p}[2], hi[2], pl.upper), select(ab{p}[3], hi[3], pl.upper));")
        o.append(indent + "}")
        for c in range(4):
            r = 4 * p + c
            o.append(indent + f"acc{r} += bb0[0] * ab{p}[{c}].x + bb0[1] * ab{p}[{c}].y"
                     f" + bb0[2] * ab{p}[{c}].z + bb0[3] * ab{p}[{c}].w;")
    return o


def conv_decls():
    return ["    " + " ".join(f"var acc{r} = vec4<f32>(0.0);" for r in range(c, c + 8))
            for c in range(0, MAX_ROWS, 8)]


def conv_stores(base):
    o = ["    var tile: array<vec4<f32>, 32>;"]
    for c in range(0, MAX_ROWS, 8):
        o.append("    " + " ".join(f"tile[{r}] = acc{r};" for r in range(c, c + 8)))
    o.append(f"    store_tile_sg({base}, row0, rows, col0, ncols, &tile);")
    return o


def conv_tile_out():
    """The forward's accumulators into the caller's tile (forward_sg_tile's `tile` pointer)."""
    return ["    " + " ".join(f"(*tile)[{r}] = acc{r};" for r in range(c, c + 8))
            for c in range(0, MAX_ROWS, 8)]


def conv_entry(name):
    o = conv_decls()
    o.append("    " + "// BODY")
    return o


def splice_named(text, tag, lines):
    pat = re.compile(r"(// BEGIN GENERATED " + tag + r")(?:\n.*?)??(\n[ \t]*// END GENERATED " + tag + r"\n)", re.S)
    assert pat.search(text), tag
    return pat.sub(lambda m: m.group(1) + "\n" + "\n".join(lines) + m.group(2), text)  # every match


def conv2d_subgroup(text):
    text = splice_named(text, "DECLS", conv_decls())
    text = splice_named(text, "FORWARD UPDATE", conv_update_lines("                "))
    text = splice_named(text, "BACKWARD UPDATE", conv_update_lines("                "))
    text = splice_named(text, "WEIGHT UPDATE", conv_update_lines("                "))
    text = splice_named(text, "FORWARD TILE", conv_tile_out())
    text = splice_named(text, "STORES", conv_stores("0u"))
    # Slice z of a split weight gradient writes block z of the scratch.
    return splice_named(text, "WSTORES", conv_stores("wid.z * rows * ncols"))


# Each generated file and how its regions are written.
FILES = {
    "shaders/matmul.wgsl": lambda text: splice(text, plain()),
    "shaders/matmul_subgroup.wgsl": lambda text: splice(text, subgroup()),
    "shaders/matmul_tiled.wgsl": lambda text: splice(text, tiled()),
    "shaders/conv2d_subgroup.wgsl": conv2d_subgroup,
}


def main(argv):
    check = argv[1:] == ["--check"]
    if argv[1:] and not check:
        sys.exit("usage: python3 shaders/gen_matmul.py [--check]")
    stale = []
    for path, write in FILES.items():
        with open(path, newline="") as f:
            text = f.read()
        new = write(text)
        if new == text:
            continue
        if check:
            stale.append(path)
        else:
            with open(path, "w", newline="") as f:
                f.write(new)
    if stale:
        print("out of date (run python3 shaders/gen_matmul.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
