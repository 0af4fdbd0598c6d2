"""The runtime that joins the engines: event bus, read model, reconciler, control socket."""
