//! Ollama backend: a client of Ollama's REST API (`/api/chat` NDJSON streaming, model
//! management) implementing the model port.
//!
//! Status: not built yet (issue "ollama-adapter"). It exposes nothing until the adapter lands.
//! Invariant: depends on `rigger-ports` only; reqwest types never cross the port.
