#!/usr/bin/env python3
"""PyTorch side of bench/mpi/data_parallel_bench.cpp: the same MAE ViT-Ti training step (32x32x3, patch 4,
decoder 128 x 2 blocks, mask 0.75; model code from bench/cuda/torch_mim_bench.py) on CPU processes with
DistributedDataParallel over gloo, the global batch split over the ranks, fp32 (eager), AdamW.
  data_parallel_bench_torch.py RANKS THREADS [global_batch=128] [steps=10] [repeats=3] [warmup=3]
Prints (rank 0) the median ms per step and images/s in the C++ bench's format."""
import os, socket, statistics, sys, time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "cuda"))
from torch_mim_bench import Cfg, build, make_optimizer, random_masks  # noqa: E402

CFG = Cfg("mae", img=32, patch=4, dim=192, heads=3, dec_dim=128, dec_depth=2, dec_heads=4)


def worker(rank, ranks, threads, global_batch, steps, repeats, warmup, port):
    torch.set_num_threads(threads)
    if ranks > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=ranks)
    torch.manual_seed(0)
    model = build(CFG)
    trained = torch.nn.parallel.DistributedDataParallel(model) if ranks > 1 else model
    opt = make_optimizer(model, torch.device("cpu"))
    batch = global_batch // ranks
    gen = torch.Generator().manual_seed(3 + rank)
    batches = [torch.randn(batch, 3, CFG.img, CFG.img, generator=gen) for _ in range(4)]

    def step(k):
        loss = trained(batches[k % 4], *random_masks(batch, CFG, torch.device("cpu")))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for k in range(warmup):
        step(k)
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        for s in range(steps):
            step(warmup + r * steps + s)
        times.append((time.perf_counter() - start) / steps)
    median = statistics.median(times)
    if rank == 0:
        print(f"PyTorch    ranks {ranks} x threads {threads}  batch {global_batch} ({batch} per rank)  "
              f"{1e3 * median:8.1f} ms/step  {global_batch / median:7.1f} img/s  (torch {torch.__version__}, "
              f"{'DDP gloo' if ranks > 1 else 'one process'})", flush=True)
    if ranks > 1:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    ranks, threads = int(sys.argv[1]), int(sys.argv[2])
    rest = [int(a) for a in sys.argv[3:]] + [128, 10, 3, 3][len(sys.argv) - 3:]
    args = (ranks, threads, *rest, free_port())
    if ranks == 1:
        worker(0, *args)
    else:
        mp.spawn(worker, args=args, nprocs=ranks)
