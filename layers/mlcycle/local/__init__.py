"""The local runner: the synthesized stack deployed into an in-process moto, handlers in-process."""
