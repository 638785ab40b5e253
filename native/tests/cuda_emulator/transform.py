# Rewrites a CUDA source for the emulator (emu.h): kernel launches become emu_launch4 calls, the mma.sync, wgmma,
# ldmatrix, cp.async, mbarrier, TMA and global timer asm calls of emu_mma, emu_wgmma_*, emu_ldmatrix_x4, emu_copy*,
# emu_mbarrier_*, emu_tma_load_box and emu_global_ns, named barriers of emu_named_barrier, dynamic shared memory
# the emulator's buffer.
# Usage: transform.py in.cu out.cpp
import re
import sys

src, dst = sys.argv[1], sys.argv[2]
s = open(src).read()
# kernel<<<grid, block, smem, stream>>>(args);  ->  emu_launch4(grid, block, smem, stream, [](auto... a) { kernel(a...); }, args);
# The arguments are evaluated and copied at the launch, as CUDA does, so that a launch captured into a graph
# replays with the values it was captured with.
def launch(m):
    args = m.group(3).strip()
    return f'emu_launch4({m.group(2)}, [](auto... a) {{ {m.group(1)}(a...); }}{", " + args if args else ""});'
s = re.sub(r'([\w:]+(?:<[^<>;()]*>)?)<<<([^;]*?)>>>\(([^;]*?)\);', launch, s, flags=re.S)
# the mma wrappers: gemm.cu's takes b as an array, attention.cu's as two registers
mma_call = 'emu_mma(d, a, b[0], b[1]);' if 'const uint32_t (&b)[2]' in s else 'emu_mma(d, a, b0, b1);'
s = re.sub(r'asm volatile\(\s*"mma\.sync.*?\);\n', mma_call + '\n', s, flags=re.S)
# cp.async: landing at the wait (emu.h)
s = re.sub(r'asm volatile\("cp\.async\.cg.*?\);\n', 'emu_copy16(dst, src, valid);\n', s, flags=re.S)
s = re.sub(r'asm volatile\("cp\.async\.wait_all.*?\);', 'emu_copy_wait_all();', s, flags=re.S)
s = re.sub(r'asm volatile\("ldmatrix\.sync\.aligned\.m8n8\.x4\.trans.*?\);\n', 'emu_ldmatrix_x4(r, row, true);\n', s, flags=re.S)
s = re.sub(r'asm volatile\("ldmatrix\.sync\.aligned\.m8n8\.x4\.shared.*?\);\n', 'emu_ldmatrix_x4(r, row, false);\n', s, flags=re.S)
# Hopper's wgmma: the sm_90a code is what the emulator compiles; a product is computed when its group is waited
# for (emu_wgmma_wait), and the register pins have nothing to do
s = s.replace('defined(__CUDA_ARCH_FEAT_SM90_ALL)', '1')
def wgmma(m):  # A in registers, or from shared memory through its descriptor (and d added or not)
    if '"l"(desc_a)' in m.group(0):
        return 'emu_wgmma_issue(&d[0][0], 64, nullptr, desc_a, desc_b, false, accumulate);\n'
    return 'emu_wgmma_issue(&d[0][0], 64, a, 0, desc, kTransB, true);\n'
s = re.sub(r'asm volatile\(\s*"(\{\\n\.reg \.pred p;\\nsetp\.ne\.b32 p, %\d+, 0;\\n"\s*")?wgmma\.mma_async.*?\);\n', wgmma, s, flags=re.S)
s = re.sub(r'asm volatile\("wgmma\.fence.*?\);\n', 'emu_wgmma_fence();\n', s, flags=re.S)
s = re.sub(r'asm volatile\("wgmma\.commit_group.*?\);\n', 'emu_wgmma_commit();\n', s, flags=re.S)
s = re.sub(r'asm volatile\("wgmma\.wait_group\.sync\.aligned %0;.*?\);\n', 'emu_wgmma_wait(kPending);\n', s, flags=re.S)
s = re.sub(r'asm volatile\("fence\.mbarrier_init.*?\);\n', '', s, flags=re.S)
# mbarriers and TMA copies (emu.h), from the wrappers' parameters
s = re.sub(r'asm volatile\("mbarrier\.init.*?\);\n', 'emu_mbarrier_init(bar, count);\n', s, flags=re.S)
s = re.sub(r'asm volatile\("mbarrier\.arrive\.expect_tx.*?\);\n', 'emu_mbarrier_arrive_expect_tx(bar, tx);\n', s, flags=re.S)
s = re.sub(r'asm volatile\("mbarrier\.arrive\.shared.*?\);\n', 'emu_mbarrier_arrive(bar);\n', s, flags=re.S)
s = re.sub(r'asm volatile\("\{ \.reg \.pred p; mbarrier\.try_wait.*?\);\n', 'done = emu_mbarrier_try_wait(bar, parity);\n', s, flags=re.S)
s = re.sub(r'asm volatile\("cp\.async\.bulk\.tensor\.4d.*?\);\n', 'emu_tma_load_box(dst, map, slot, row, b, bar);\n', s, flags=re.S)
s = re.sub(r'asm volatile\("mov\.u64 %0, %%globaltimer.*?\);\n', 't = emu_global_ns();\n', s, flags=re.S)
# named barriers (emu.h), from the wrappers' parameters
s = re.sub(r'asm volatile\("bar\.sync %0, %1;.*?\);\n', 'emu_named_barrier(id, count, true);\n', s, flags=re.S)
s = re.sub(r'asm volatile\("bar\.arrive %0, %1;.*?\);\n', 'emu_named_barrier(id, count, false);\n', s, flags=re.S)
s = re.sub(r'asm volatile\(""[^;]*\);', '', s)
s = s.replace('__cvta_generic_to_shared(', 'emu_shared_address(')
s = s.replace('extern __shared__ float smem[];', 'float* smem = reinterpret_cast<float*>(emu_block->dyn_smem.data());')
s = s.replace('extern __shared__ double smem_f64[];', 'double* smem_f64 = reinterpret_cast<double*>(emu_block->dyn_smem.data());')
# a cooperative launch and its grid-wide barrier
s = re.sub(r'cudaLaunchKernelEx\(&(\w+), (\w+), ([^;]*?)\);', r'emu_launch_cooperative(\1, [](auto... a) { \2(a...); }, \3);', s, flags=re.S)
s = s.replace('#include <cooperative_groups.h>', '').replace('cooperative_groups::this_grid().sync()', 'emu_grid_sync()')
# a kernel's address is not one g++ converts to const void* (nvcc's template overload): the attribute call is a
# no-op here anyway
s = re.sub(r'cudaFuncSetAttribute\(\w+(<X>)?,', 'cudaFuncSetAttribute((const void*)nullptr,', s)
open(dst, 'w').write(s)
