"""Built-in method families, each a plugin module registered by the host.

These modules only describe methods (:class:`~attribkit.registry.MethodSpec`);
the kernels they point at are imported on first use.
"""
