"""Compression of language models: the spec language, registry and method discovery (`spec`), scopes (`scopes`),
apply/verify and code keys (`apply`), the compression report (`report`), save/load and the cache (`cache`); the
families: pruning (`prune`), quantization (`quant`) and distillation (`distill`). Any lookup in the registry
(`parse_spec`, `compress`, `list_methods`) first imports every module of this package and of the `dike.methods`
entry points (`discover_methods`), which register their methods."""
