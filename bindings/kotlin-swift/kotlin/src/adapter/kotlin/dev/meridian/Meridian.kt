// Meridian for Kotlin: a few idiomatic helpers over the generated bindings (dev.meridian.ffi).
//
// The generated code already makes every SDK call a suspend function and every failure a
// typed MeridianException; this file adds a Flow of events, the stable error codes and a
// shorter way to connect.

package dev.meridian

import dev.meridian.ffi.AppStore
import dev.meridian.ffi.ClientBuilder
import dev.meridian.ffi.ClientOptions
import dev.meridian.ffi.Event
import dev.meridian.ffi.EventListener
import dev.meridian.ffi.FederationKey
import dev.meridian.ffi.LogHandler
import dev.meridian.ffi.MeridianClient
import dev.meridian.ffi.MeridianException
import dev.meridian.ffi.Message
import dev.meridian.ffi.TokenSource
import kotlinx.coroutines.channels.Channel
import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.buffer
import kotlinx.coroutines.flow.callbackFlow
import kotlinx.coroutines.flow.filter
import kotlinx.coroutines.flow.filterIsInstance
import kotlinx.coroutines.flow.map

/** Entry points. */
object Meridian {
    /**
     * Connects a client: reads the federation document and the user's session from the
     * directory and restores the pending sends of the store (`store`, else files under
     * `storeDir`, else memory). Throws [MeridianException].
     *
     * `logHandler` gets the SDK's log records at `logLevel` (`error`, `warn`, `info`,
     * `debug`, `trace`) and above, for the whole process (the last one set wins); a record
     * never holds a token, a key or a message body. Hand them to Logcat or your logger.
     */
    suspend fun connect(
        directoryUrl: String,
        token: String,
        federationKeys: List<FederationKey>,
        storeDir: String? = null,
        store: AppStore? = null,
        tokenSource: TokenSource? = null,
        logLevel: String = "info",
        logHandler: LogHandler? = null,
    ): MeridianClient {
        var builder = ClientBuilder(ClientOptions(directoryUrl, token, federationKeys, storeDir))
        store?.let { builder = builder.store(it) }
        tokenSource?.let { builder = builder.tokenSource(it) }
        logHandler?.let { builder = builder.logHandler(logLevel, it) }
        return builder.connect()
    }
}

/**
 * Every event of this client while the flow is collected, in order. The subscription opens
 * when collection starts and is cancelled when it stops; events are buffered without bound,
 * so a slow collector misses none.
 */
fun MeridianClient.events(): Flow<Event> = callbackFlow {
    val subscription = subscribe(object : EventListener {
        override fun onEvent(event: Event) {
            trySend(event)
        }
    })
    awaitClose {
        subscription.cancel()
        subscription.close()
    }
}.buffer(Channel.UNLIMITED)

/** The messages among these events, of `space` only when given. */
fun Flow<Event>.messages(space: String? = null): Flow<Message> =
    filterIsInstance<Event.MessageReceived>()
        .map { it.message }
        .filter { space == null || it.space == space }

/** The stable code, as in the Rust core and the npm package (e.g. `policy_violation`). */
val MeridianException.code: String
    get() = when (this) {
        is MeridianException.PolicyViolation -> "policy_violation"
        is MeridianException.NotFound -> "not_found"
        is MeridianException.Unauthorized -> "unauthorized"
        is MeridianException.InvalidInput -> "invalid_input"
        is MeridianException.DirectoryUnavailable -> "directory_unavailable"
        is MeridianException.Closed -> "closed"
        is MeridianException.Timeout -> "timeout"
        is MeridianException.Protocol -> "protocol"
        is MeridianException.Moved -> "moved"
        is MeridianException.Transport -> "transport"
        is MeridianException.Integrity -> "integrity"
        is MeridianException.Internal -> "internal"
    }
