# torch.mm reference, same shapes / method as gemm_bench.c (median of reps, >=20 ms samples).
import sys, time, statistics, torch
shapes = [(64,64,64),(128,128,128),(256,64,256),(64,512,64),(256,256,256),(512,512,512),(1024,1024,1024),(2048,2048,2048)]
print(f"# torch {torch.__version__} cap={torch.backends.cpu.get_cpu_capability()}", file=sys.stderr)
for t in (1, 2):
    torch.set_num_threads(t)
    for M, N, K in shapes:
        a = torch.rand(M, K) - .5; b = torch.rand(K, N) - .5; c = torch.empty(M, N)
        torch.mm(a, b, out=c); torch.mm(a, b, out=c)
        t0 = time.perf_counter(); torch.mm(a, b, out=c); one = time.perf_counter() - t0
        iters = 1 if one > .02 else int(.02 / max(one, 1e-7)) + 1
        reps = 5 if M >= 2048 else 9
        s = []
        for _ in range(reps):
            t0 = time.perf_counter()
            for _ in range(iters): torch.mm(a, b, out=c)
            s.append((time.perf_counter() - t0) / iters)
        print(f"torch\t{t}\t{M}x{N}x{K}\t{2*M*N*K/statistics.median(s)*1e-9:.1f}", flush=True)
