"""Compression of language models: the spec language and registry (`dike.compress.core`), pruning (`prune`),
quantization (`quant`) and distillation (`distill`). The families register their methods when first needed: any
lookup in the registry (`parse_spec`, `compress`, `list_methods`) imports them lazily."""
