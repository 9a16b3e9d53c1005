"""What the benchmark scripts share: the CPU they ran on, and writing a result's .json and .md."""
import json
import os
import platform


def cpu_description():
    """The CPU's model name and the widest vector ISA the kernels can use: `AMD EPYC (AVX2)`."""
    info = open("/proc/cpuinfo").read()
    name = next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model name")), platform.processor())
    isa = "AVX-512" if "avx512f" in info else "AVX2" if "avx2" in info else "no AVX2"
    return f"{name} ({isa})"


def write_result(prefix, obj, md):
    """Writes <prefix>.json and <prefix>.md, each atomically, the .md last; prints the .md."""
    os.makedirs(os.path.dirname(prefix) or ".", exist_ok=True)
    for path, text in [(prefix + ".json", json.dumps(obj, indent=1) + "\n"), (prefix + ".md", md)]:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    print(md)
