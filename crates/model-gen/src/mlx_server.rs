//! A real `mlx_lm.server` from the project's MLX venv, serving the tiny generated model on
//! 127.0.0.1, for the tests that need a real OpenAI-compatible server (`cargo xtask setup-mlx`
//! makes the venv, or `RIGGER_MLX_PYTHON` names one; without it the tests fail with that
//! instruction, never skip silently).

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::fixture::{mlx_python, tiny_model};

/// A running `mlx_lm.server`. It is started through a shell that kills it when this process's
/// end of its stdin closes: on drop, and also when the test binary dies without unwinding.
pub struct MlxServer {
    child: Child,
    /// `http://127.0.0.1:PORT/v1`.
    pub base_url: String,
    /// The model id it serves (the tiny model's folder).
    pub model_id: String,
    /// The context length the conformance suite declares to a client (mlx_lm.server neither
    /// enforces nor reports one): a quarter of the model's window, see `start`.
    pub context_length: u32,
    /// The model's own context window (`max_position_embeddings`).
    pub window: u32,
}

impl Drop for MlxServer {
    fn drop(&mut self) {
        // Closing the shell's stdin makes it kill the server (killing the shell would orphan it).
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

impl MlxServer {
    /// Starts it and waits until it answers `/health`.
    ///
    /// # Panics
    /// Without the MLX venv, or when the server does not come up within 120 s (with its output).
    pub fn start() -> Self {
        let python = mlx_python();
        let model_dir = tiny_model()
            .and_then(|d| d.canonicalize().map_err(|e| crate::GenError::io(&d, e)))
            .expect("the tiny model");
        let config: serde_json::Value = std::fs::read(model_dir.join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .expect("the tiny model's config.json");
        // mlx_lm.server neither enforces nor reports a context length, so the adapter checks the
        // declared one against the usage the server reports. Declaring a quarter of the model's
        // window keeps the over-long prompt of the context scenario (twice the declared window)
        // small enough for CPU prefill within the suite's patience, even on a loaded CI machine.
        let window = config["max_position_embeddings"]
            .as_u64()
            .expect("max_position_embeddings") as u32;
        let context_length = window / 4;
        let port = free_port();
        let log = std::env::temp_dir().join(format!("rigger-mlx-server-{port}.log"));
        // mlx_lm.server's /v1/models scans the hub cache and, when the folder is missing,
        // fails after sending its 200 headers (an empty body). An empty cache of its own.
        let hub_cache = std::env::temp_dir().join(format!("rigger-mlx-hub-cache-{port}"));
        std::fs::create_dir_all(&hub_cache).expect("a hub cache folder");
        let script = r#""$0" -m mlx_lm.server --model "$1" --host 127.0.0.1 --port "$2" >"$3" 2>&1 &
server=$!
read _ignored
kill $server"#;
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(&python)
            .arg(&model_dir)
            .arg(port.to_string())
            .arg(&log)
            // No hub access here: an unknown model must fail at once, not wait on the network.
            .env("HF_HUB_OFFLINE", "1")
            .env("HF_HUB_CACHE", &hub_cache)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh starts");
        let server = MlxServer {
            child,
            base_url: format!("http://127.0.0.1:{port}/v1"),
            model_id: model_dir.display().to_string(),
            context_length,
            window,
        };
        server.wait_ready(port, &log);
        server
    }

    fn wait_ready(&self, port: u16, log: &Path) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                use std::io::Write;
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = stream.write_all(
                    b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                );
                let mut reply = String::new();
                let _ = stream.read_to_string(&mut reply);
                if reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let output = std::fs::read_to_string(log).unwrap_or_default();
        panic!("mlx_lm.server did not become ready within 120 s; its output:\n{output}");
    }
}
