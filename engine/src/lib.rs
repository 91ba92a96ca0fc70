//! Sluice's bundled inference engine.
