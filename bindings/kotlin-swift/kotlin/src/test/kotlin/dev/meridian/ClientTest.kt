// The SDK from Kotlin on the JVM, through the generated bindings and the native library,
// against a real devserver on loopback.

package dev.meridian

import dev.meridian.ffi.AppStore
import dev.meridian.ffi.ConnectionState
import dev.meridian.ffi.Event
import dev.meridian.ffi.LogEntry
import dev.meridian.ffi.LogHandler
import dev.meridian.ffi.MeridianClient
import dev.meridian.ffi.MeridianException
import dev.meridian.ffi.Message
import dev.meridian.ffi.SpaceKind
import dev.meridian.ffi.StoreRecord
import dev.meridian.ffi.setLogHandler
import java.util.UUID
import java.util.concurrent.ConcurrentHashMap
import kotlin.time.Duration
import kotlin.time.Duration.Companion.seconds
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.NonCancellable
import kotlinx.coroutines.cancelChildren
import kotlinx.coroutines.coroutineScope
import kotlinx.coroutines.channels.Channel
import kotlinx.coroutines.delay
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withContext
import kotlinx.coroutines.withTimeout
import kotlinx.coroutines.withTimeoutOrNull
import kotlinx.coroutines.yield
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import org.junit.jupiter.api.Timeout

private const val GENERAL = "acme:general"
private const val LAUNCH = "globex:launch"

@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@Timeout(120)
class ClientTest {
    private lateinit var server: Devserver

    @BeforeAll
    fun startServer() {
        server = Devserver.start()
    }

    @AfterAll
    fun stopServer() {
        server.stop()
    }

    private fun scenario(body: suspend Scenario.() -> Unit): Unit = runBlocking {
        withTimeout(100.seconds) {
            coroutineScope {
                val scenario = Scenario(this, server)
                try {
                    scenario.body()
                } finally {
                    withContext(NonCancellable) { scenario.closeAll() }
                    coroutineContext.cancelChildren()
                }
            }
        }
    }

    @Test
    fun `users of two regions talk in a DM, each message once and in order`() = scenario {
        val ana = connect("ana")
        val sam = connect("sam")
        assertEquals("eu-west", ana.session().homeRegion)
        assertEquals("us-east", sam.session().homeRegion)
        val anaHears = inbox(ana)
        val samHears = inbox(sam)

        val dm = ana.createDm("sam")
        assertEquals(SpaceKind.DM, dm.kind)
        assertEquals("eu-west", dm.region)
        ana.joinSpace(dm.space)
        sam.joinSpace(dm.space)

        val tag = tag()
        val bodies = (1..3).map { "$tag ana $it" }
        val sends = bodies.map { ana.sendMessage(dm.space, it) }
        val receipts = withTimeout(20.seconds) { sends.map { it.acked() } }
        assertEquals(List(3) { receipts[0].seq + it.toULong() }, receipts.map { it.seq }, "consecutive seqs")

        val received = samHears.messages(3) { it.space == dm.space && it.body.startsWith(tag) }
        assertEquals(bodies, received.map { it.body })
        assertEquals(receipts.map { it.seq }, received.map { it.seq })
        assertEquals(receipts.map { it.messageId }, received.map { it.id })
        assertTrue(received.all { it.sender == "ana" }, "sender: $received")
        samHears.expectNone(1.seconds) { it.body.startsWith(tag) }

        val reply = withTimeout(20.seconds) { sam.sendMessage(dm.space, "$tag sam reply").acked() }
        val heard = anaHears.messages(1) { it.space == dm.space && it.sender == "sam" && it.body.startsWith(tag) }
        assertEquals("$tag sam reply", heard.single().body)
        assertEquals(reply.seq, heard.single().seq)
        assertEquals(receipts.last().seq + 1u, reply.seq)
    }

    @Test
    fun `a send the policy forbids and bad input fail with typed exceptions`() = scenario {
        val ana = connect("ana")
        val refused = thrown<MeridianException.PolicyViolation> { ana.sendMessage(LAUNCH, "must not leave") }
        assertEquals("us-east", refused.region)
        assertEquals("policy_violation", refused.code)
        assertEquals(emptyList<Any>(), ana.pendingSends())

        val invalid = thrown<MeridianException.InvalidInput> { ana.joinSpace("") }
        assertEquals("invalid_input", invalid.code)
    }

    @Test
    fun `clients reconnect after the devserver is killed and restarted`() = scenario {
        val ana = connect("ana")
        val ben = connect("ben")
        val anaHears = inbox(ana)
        ana.joinSpace(GENERAL)
        ben.joinSpace(GENERAL)

        val tag = tag()
        val before = withTimeout(20.seconds) { ben.sendMessage(GENERAL, "$tag before").acked() }
        assertEquals(before.seq, anaHears.messages(1) { it.body == "$tag before" }.single().seq)

        server.restart()

        val after = ben.sendMessage(GENERAL, "$tag after")
        val receipt = withTimeout(30.seconds) { after.acked() }
        val heard = anaHears.messages(1, 30.seconds) { it.body == "$tag after" }.single()
        assertEquals(receipt.seq, heard.seq)
        assertEquals(before.seq + 1u, heard.seq)
        assertEquals(ConnectionState.Connected, ana.connectionState())
        anaHears.expectNone(1.seconds) { it.body.startsWith(tag) }
    }

    @Test
    fun `logs reach the app's handler with trace ids and never a token or a body`() = runBlocking {
        val records = java.util.Collections.synchronizedList(mutableListOf<LogEntry>())
        val handler = object : LogHandler {
            override fun log(record: LogEntry) {
                records += record
            }
        }
        val body = "a body that must never be logged 93d1"
        val client = Meridian.connect(
            server.directoryUrl, "sam-token", server.federationKeys,
            logLevel = "debug", logHandler = handler,
        )
        try {
            client.joinSpace("acme:general")
            val receipt = client.sendMessage("acme:general", body).acked()
            val stored = records.toList().single { it.message == "send stored" }
            val trace = stored.fields.single { it.name == "trace" }.value
            assertTrue(Regex("[0-9a-f]{32}").matches(trace), trace)
            assertEquals(receipt.seq.toString(), stored.fields.single { it.name == "seq" }.value)
            assertTrue(records.toList().any { it.message == "send submitted" && it.fields.any { f -> f.value == trace } })
            for (record in records.toList()) {
                val line = record.toString()
                assertFalse(body in line, line)
                assertFalse("sam-token" in line, line)
            }
        } finally {
            client.disconnect()
            client.close()
            setLogHandler("off", null)
        }
    }

    @Test
    fun `a send made offline survives a restart of the client in the app's own store`() = scenario {
        val store = MapStore()
        val ben = connect("ben")
        val benHears = inbox(ben)
        ben.joinSpace(GENERAL)

        // Ana's client joins first, so that the store also keeps where she is in the space:
        // her next client's join resumes from there, whenever the restored send goes out.
        val first = connect("ana", store)
        first.joinSpace(GENERAL)
        first.networkChanged(false)
        val tag = tag()
        val pending = first.sendMessage(GENERAL, "$tag offline")
        val key = pending.key()
        val queued = first.pendingSends()
        assertEquals(listOf(key), queued.map { it.key })
        assertEquals("$tag offline", queued.single().body)
        assertTrue(store.holds(key), "the send is in the app's store: ${store.keys()}")
        benHears.expectNone(1.seconds) { it.body.startsWith(tag) }
        close(first)
        assertTrue(store.holds(key), "the send is still in the app's store: ${store.keys()}")

        val second = connect("ana", store)
        val anaHears = inbox(second)
        second.joinSpace(GENERAL)
        val delivered = benHears.messages(1, 30.seconds) { it.body.startsWith(tag) }.single()
        assertEquals("$tag offline", delivered.body)
        assertEquals("ana", delivered.sender)
        val seen = anaHears.messages(1, 30.seconds) { it.body.startsWith(tag) }.single()
        assertEquals(delivered.id, seen.id)
        withTimeout(10.seconds) {
            while (second.pendingSends().isNotEmpty()) delay(100)
        }
        anaHears.expectNone(1.seconds) { it.body.startsWith(tag) }
        // The store is written in the background; disconnect waits until it is up to date.
        close(second)
        assertTrue(!store.holds(key), "a delivered send leaves the app's store: ${store.keys()}")
        benHears.expectNone(1.seconds) { it.body.startsWith(tag) }
    }
}

/** A store of the app's: records in a map. */
private class MapStore : AppStore {
    private val records = ConcurrentHashMap<Pair<String, String>, ByteArray>()

    override fun put(namespace: String, key: String, value: ByteArray) {
        records[namespace to key] = value.copyOf()
    }

    override fun delete(namespace: String, key: String) {
        records.remove(namespace to key)
    }

    override fun list(namespace: String): List<StoreRecord> =
        records.entries.filter { it.key.first == namespace }.map { StoreRecord(it.key.second, it.value.copyOf()) }

    fun keys(): List<Pair<String, String>> = records.keys.toList()

    /** Whether a record's key names `key` (the outbox keeps a send under its idempotency key). */
    fun holds(key: String): Boolean = records.keys.any { key in it.second }
}

/** One test's clients and event collectors: all closed when it ends, however it ends. */
private class Scenario(scope: CoroutineScope, private val server: Devserver) : CoroutineScope by scope {
    private val clients = mutableListOf<MeridianClient>()

    suspend fun connect(user: String, store: AppStore? = null): MeridianClient =
        Meridian.connect(server.directoryUrl, "$user-token", server.federationKeys, store = store)
            .also { clients += it }

    /**
     * Starts collecting the client's [events]. The collector starts undispatched and the
     * caller yields once, so on runBlocking's single thread the subscription is open when
     * this returns.
     */
    suspend fun inbox(client: MeridianClient): Inbox {
        val who = client.session().user
        val events = Channel<Event>(Channel.UNLIMITED)
        launch(start = CoroutineStart.UNDISPATCHED) { client.events().collect { events.send(it) } }
        yield()
        return Inbox(who, events)
    }

    /** Disconnects the client and frees it. */
    suspend fun close(client: MeridianClient) {
        clients -= client
        try {
            withTimeout(10.seconds) { client.disconnect() }
        } finally {
            client.close()
        }
    }

    suspend fun closeAll() {
        for (client in clients.toList()) runCatching { close(client) }
    }
}

/** What a client hears through [events], from when the inbox is made. */
private class Inbox(private val who: String, private val events: Channel<Event>) {
    /** Every event taken so far, for failure messages. */
    private val heard = mutableListOf<Event>()

    private suspend fun next(): Event = events.receive().also { heard += it }

    /** The next `count` messages that match, failing after `timeout`. */
    suspend fun messages(count: Int, timeout: Duration = 20.seconds, match: (Message) -> Boolean): List<Message> {
        val found = mutableListOf<Message>()
        val done = withTimeoutOrNull(timeout) {
            while (found.size < count) {
                val event = next()
                if (event is Event.MessageReceived && match(event.message)) found += event.message
            }
        }
        check(done != null) { "$who heard ${found.size} of $count messages in $timeout; all events: $heard" }
        return found
    }

    /** Fails when a matching message arrives within `wait`. */
    suspend fun expectNone(wait: Duration, match: (Message) -> Boolean) {
        val extra = withTimeoutOrNull(wait) {
            var found: Message? = null
            while (found == null) {
                val event = next()
                if (event is Event.MessageReceived && match(event.message)) found = event.message
            }
            found
        }
        check(extra == null) { "$who heard an unexpected message $extra; all events: $heard" }
    }
}

private suspend inline fun <reified T : Throwable> thrown(block: suspend () -> Unit): T {
    try {
        block()
    } catch (e: Throwable) {
        if (e is T) return e
        throw AssertionError("expected ${T::class.simpleName}, got $e", e)
    }
    throw AssertionError("expected ${T::class.simpleName}, nothing was thrown")
}

private fun tag(): String = "k" + UUID.randomUUID().toString().take(8)
