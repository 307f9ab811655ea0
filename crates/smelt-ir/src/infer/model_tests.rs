//! Shape inference over the op chains real models use.
