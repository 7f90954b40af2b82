"""Policies (transformers, openai, vllm), PRMs (verifier, rollout, token, qwen, judge) and the embedded model."""
