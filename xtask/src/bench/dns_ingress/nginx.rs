//! Debian's nginx, in two roles: the backends behind the Ingress route
//! (one worker in each backend pod answering a short static body), and the
//! Ingress baseline (in node 1's netns, on another port than the agent's
//! :80), configured as ingress-nginx renders one host and path: an
//! upstream of the Service's endpoints with a keep-alive pool, HTTP/1.1 to
//! the backends, `X-Forwarded-For` and `X-Forwarded-Proto`, 404 for other
//! hosts. Each instance keeps its files in its own directory of the bench's
//! state directory; none reads /etc/nginx.

use std::{
    fs,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result};
use skiff_tests::{Node, Pod, ProcessGuard};

/// The backends' port, and the Services'.
pub const BACKEND_PORT: u16 = 80;
/// The proxy's port on node 1, beside the agent's :80.
pub const PROXY_PORT: u16 = 8080;
/// What each backend answers.
pub const BODY: &str = "ok";

/// nginx serving [`BODY`] on `pod`'s address, port [`BACKEND_PORT`].
pub fn backend(pod: &Pod, state_dir: &Path) -> Result<ProcessGuard> {
    let dir = instance_dir(state_dir, &format!("nginx-{}", pod.name()))?;
    let server = format!(
        "server {{\n\
         \x20   listen {ip}:{BACKEND_PORT} reuseport;\n\
         \x20   keepalive_requests 1000000;\n\
         \x20   location / {{ return 200 \"{BODY}\\n\"; }}\n\
         }}\n",
        ip = pod.ip()
    );
    let config = config(&dir, "1", &server)?;
    start(|| pod.command("nginx"), &dir, &config)
}

/// The Ingress baseline on `node`: `host` and every path to `backends`.
pub fn proxy(
    node: &Node,
    host: &str,
    backends: &[Ipv4Addr],
    state_dir: &Path,
) -> Result<(ProcessGuard, SocketAddr)> {
    let dir = instance_dir(state_dir, "nginx-proxy")?;
    let address = SocketAddr::from((node.ip(), PROXY_PORT));
    let config = config(&dir, "auto", &proxy_servers(address, host, backends))?;
    let server = start(|| node.command("nginx"), &dir, &config)?;
    Ok((server, address))
}

/// The proxy's upstream and servers, as ingress-nginx writes them for a
/// Prefix `/` rule of one host.
fn proxy_servers(address: SocketAddr, host: &str, backends: &[Ipv4Addr]) -> String {
    let servers: String = backends
        .iter()
        .map(|ip| format!("    server {ip}:{BACKEND_PORT};\n"))
        .collect();
    format!(
        "upstream backends {{\n\
         {servers}\
         \x20   keepalive 320;\n\
         \x20   keepalive_requests 10000;\n\
         }}\n\
         server {{\n\
         \x20   listen {address} default_server reuseport;\n\
         \x20   return 404;\n\
         }}\n\
         server {{\n\
         \x20   listen {address};\n\
         \x20   server_name {host};\n\
         \x20   keepalive_requests 1000000;\n\
         \x20   location / {{\n\
         \x20       proxy_pass http://backends;\n\
         \x20       proxy_http_version 1.1;\n\
         \x20       proxy_set_header Connection \"\";\n\
         \x20       proxy_set_header Host $host;\n\
         \x20       proxy_set_header X-Forwarded-For $remote_addr;\n\
         \x20       proxy_set_header X-Forwarded-Proto $scheme;\n\
         \x20   }}\n\
         }}\n"
    )
}

/// The whole configuration: `workers` worker processes, `servers` in its
/// http block, every file nginx writes in `dir`.
fn config(dir: &Path, workers: &str, servers: &str) -> Result<PathBuf> {
    let dir_text = dir.display();
    let text = format!(
        "daemon off;\n\
         worker_processes {workers};\n\
         pid {dir_text}/nginx.pid;\n\
         error_log {dir_text}/error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   client_body_temp_path {dir_text}/client_body;\n\
         \x20   proxy_temp_path {dir_text}/proxy;\n\
         \x20   fastcgi_temp_path {dir_text}/fastcgi;\n\
         \x20   uwsgi_temp_path {dir_text}/uwsgi;\n\
         \x20   scgi_temp_path {dir_text}/scgi;\n\
         {servers}\
         }}\n"
    );
    let path = dir.join("nginx.conf");
    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn instance_dir(state_dir: &Path, name: &str) -> Result<PathBuf> {
    let dir = state_dir.join(name);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Checks the configuration (`nginx -t`), then runs nginx in the
/// foreground, each with a command from `nginx` (in the namespace it
/// serves in); the caller waits until it answers.
fn start(nginx: impl Fn() -> Command, dir: &Path, config: &Path) -> Result<ProcessGuard> {
    let with_files = |mut command: Command| {
        command
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(config);
        command
    };
    let mut check = with_files(nginx());
    check.args(["-t", "-q"]);
    super::output_of(&mut check)
        .with_context(|| format!("nginx -t -c {} (see error.log beside it)", config.display()))?;
    let mut command = with_files(nginx());
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    ProcessGuard::spawn(&mut command).context("starting nginx")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proxy_keeps_connections_to_every_backend() {
        let text = proxy_servers(
            SocketAddr::from(([172, 30, 0, 11], PROXY_PORT)),
            "bench.skiff.test",
            &[Ipv4Addr::new(10, 244, 2, 2), Ipv4Addr::new(10, 244, 2, 3)],
        );
        assert!(
            text.contains("    server 10.244.2.2:80;\n    server 10.244.2.3:80;\n"),
            "{text}"
        );
        assert!(text.contains("keepalive 320;"), "{text}");
        assert!(text.contains("server_name bench.skiff.test;"), "{text}");
        assert!(text.contains("proxy_set_header Connection \"\";"), "{text}");
    }
}
