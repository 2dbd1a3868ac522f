// A tiny static file server on loopback: what `python3 -m http.server` would do, with the
// MIME types browsers insist on for ES modules and wasm.

import { createReadStream, statSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { extname, join, normalize, sep } from "node:path";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".wasm": "application/wasm",
  ".css": "text/css; charset=utf-8",
  ".png": "image/png",
  ".svg": "image/svg+xml",
  ".ico": "image/x-icon",
  ".txt": "text/plain; charset=utf-8",
  ".md": "text/plain; charset=utf-8",
};

export class StaticServer {
  readonly url: string;
  readonly #server: Server;

  private constructor(server: Server) {
    this.#server = server;
    const { port } = server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${port}`;
  }

  /** Serves `root` on 127.0.0.1, on a port the OS picks. */
  static start(root: string): Promise<StaticServer> {
    const base = normalize(root);
    const server = createServer((req, res) => {
      let file: string;
      try {
        const path = decodeURIComponent(new URL(req.url ?? "/", "http://localhost").pathname);
        file = normalize(join(base, path));
      } catch {
        res.writeHead(400).end();
        return;
      }
      if (file !== base && !file.startsWith(base.endsWith(sep) ? base : base + sep)) {
        res.writeHead(403).end();
        return;
      }
      let size: number;
      try {
        let stat = statSync(file);
        if (stat.isDirectory()) {
          file = join(file, "index.html");
          stat = statSync(file);
        }
        size = stat.size;
      } catch {
        res.writeHead(404, { "content-type": "text/plain" }).end("not found");
        return;
      }
      if (req.method !== "GET" && req.method !== "HEAD") {
        res.writeHead(405).end();
        return;
      }
      res.writeHead(200, {
        "content-type": TYPES[extname(file).toLowerCase()] ?? "application/octet-stream",
        "content-length": size,
        "cache-control": "no-store",
      });
      if (req.method === "HEAD") {
        res.end();
        return;
      }
      createReadStream(file).pipe(res);
    });
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve(new StaticServer(server)));
    });
  }

  close(): Promise<void> {
    this.#server.closeAllConnections();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}
