"""Single-stream decode baseline with llama.cpp (llama-cpp-python 0.3.x).

Usage: python3 engine/benches/llama_cpp_baseline.py [MODEL.gguf] [THREADS]
Prints decode tokens/s for the same prompt the Rust benchmark uses.
"""
import sys
import time

from llama_cpp import Llama

path = sys.argv[1] if len(sys.argv) > 1 else "models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
llm = Llama(model_path=path, n_threads=threads, n_ctx=2048, verbose=False)
prompt = "<|im_start|>user\nWrite a long story about a dragon and a knight.<|im_end|>\n<|im_start|>assistant\n"
rates = []
for seed in range(3):
    stamps = []
    for _ in llm.create_completion(prompt, max_tokens=128, temperature=0.7, top_p=0.95,
                                   top_k=40, seed=seed, stream=True):
        stamps.append(time.perf_counter())
    if len(stamps) > 2:
        rates.append((len(stamps) - 1) / (stamps[-1] - stamps[0]))
rates.sort()
print(f"llama.cpp {threads} threads: decode {rates[len(rates) // 2]:.1f} tok/s (median of {len(rates)})")
