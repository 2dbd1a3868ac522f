// Starts the reference federation (the devserver binary) on loopback for a test class.

package dev.meridian

import dev.meridian.ffi.FederationKey
import java.io.File
import java.nio.file.Files
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit

/**
 * One devserver process. The binary is the system property `meridian.devserver` (set by the
 * pom), else `MERIDIAN_DEVSERVER`, else the workspace's `target/debug/devserver`.
 */
class Devserver private constructor(
    val directoryUrl: String,
    val federationKeys: List<FederationKey>,
    /** Region id to its port. */
    val regionPorts: Map<String, Int>,
    private val directoryPort: Int,
    private val dataDir: File,
    private var process: Process,
) {
    companion object {
        private val binary: String =
            System.getProperty("meridian.devserver")
                ?: System.getenv("MERIDIAN_DEVSERVER")
                ?: "../../../target/debug/devserver"

        /** A fresh federation on ports the OS picks, keeping its data in a temporary folder. */
        fun start(): Devserver {
            val dataDir = Files.createTempDirectory("meridian-kotlin-").toFile()
            val (line, process) = launch(listOf("--ephemeral-ports", "--data-dir", dataDir.path))
            val ready = Ready.parse(line)
            return Devserver(
                ready.directoryUrl,
                ready.federationKeys,
                ready.regionPorts,
                ready.directoryPort,
                dataDir,
                process,
            )
        }

        private fun launch(args: List<String>): Pair<String, Process> {
            val file = File(binary)
            check(file.canExecute()) {
                "no devserver at ${file.absolutePath}: run `cargo build -p devserver` (or set -Dmeridian.devserver)"
            }
            val builder = ProcessBuilder(listOf(file.absolutePath, "--ready-line") + args)
                .redirectError(ProcessBuilder.Redirect.INHERIT)
            builder.environment().putIfAbsent("RUST_LOG", "warn")
            val process = builder.start()
            // Read stdout on a thread of its own for the process's whole life, so that the
            // pipe never fills; the READY line is handed over through a queue.
            val lines = LinkedBlockingQueue<String>()
            Thread({
                process.inputStream.bufferedReader().useLines { all -> all.forEach { lines.put(it) } }
                lines.put(EOF)
            }, "devserver-stdout").apply { isDaemon = true }.start()
            val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20)
            while (true) {
                val left = deadline - System.nanoTime()
                val line = lines.poll(left.coerceAtLeast(0), TimeUnit.NANOSECONDS)
                when {
                    line == null -> {
                        process.destroyForcibly()
                        error("the devserver did not start in 20 s")
                    }
                    line === EOF -> error("the devserver exited (${process.waitFor()}) before it was ready")
                    line.startsWith("READY ") -> return line.removePrefix("READY ") to process
                }
            }
        }

        private const val EOF = "\u0000eof"
    }

    /** Kills the process (SIGKILL, as a crash would) and starts it again on the same ports and data. */
    fun restart(downtimeMs: Long = 0) {
        kill()
        Thread.sleep(downtimeMs)
        val ports = listOf("--port", "directory=$directoryPort") +
            regionPorts.flatMap { (region, port) -> listOf("--port", "$region=$port") }
        process = launch(ports + listOf("--data-dir", dataDir.path)).second
    }

    fun stop() {
        kill()
        dataDir.deleteRecursively()
    }

    private fun kill() {
        process.destroyForcibly()
        process.waitFor(20, TimeUnit.SECONDS)
    }
}

/** The READY line: `{"directory_url":...,"federation_keys":[{"id":...,"public_key":...}],"regions":{...}}`. */
private class Ready(
    val directoryUrl: String,
    val directoryPort: Int,
    val federationKeys: List<FederationKey>,
    val regionPorts: Map<String, Int>,
) {
    companion object {
        private val directory = Regex(""""directory_url"\s*:\s*"(http://[^"]+:(\d+))/?"""")
        private val key = Regex("""\{\s*"id"\s*:\s*"([^"]+)"\s*,\s*"public_key"\s*:\s*"([^"]+)"\s*}""")
        private val regions = Regex(""""regions"\s*:\s*\{([^}]*)}""")
        private val region = Regex(""""([^"]+)"\s*:\s*"wss?://[^"]+:(\d+)[^"]*"""")

        fun parse(json: String): Ready {
            val dir = directory.find(json) ?: error("no directory_url in $json")
            val keys = key.findAll(json).map { FederationKey(it.groupValues[1], it.groupValues[2]) }.toList()
            val regionsJson = regions.find(json)?.groupValues?.get(1) ?: error("no regions in $json")
            val ports = region.findAll(regionsJson).associate { it.groupValues[1] to it.groupValues[2].toInt() }
            check(keys.isNotEmpty() && ports.isNotEmpty()) { "unexpected READY line: $json" }
            return Ready(dir.groupValues[1], dir.groupValues[2].toInt(), keys, ports)
        }
    }
}
