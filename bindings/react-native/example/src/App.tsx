// The example app: connects with connectClient, joins one space, lists its messages as
// events(client) delivers them (each once, in seq order) and sends what is typed. Errors are
// shown with their stable code (errorCode), as every Meridian SDK names them.
import { useEffect, useRef, useState } from "react";
import { Button, FlatList, SafeAreaView, StyleSheet, Text, TextInput, View } from "react-native";
import {
  connectClient,
  errorCode,
  events,
  ConnectionState,
  Event,
  MeridianError,
  type Message,
  type MeridianClientLike,
} from "@meridian/react-native";
import { directoryUrl, federationKeys, space, token } from "./config";

function describe(error: unknown): string {
  if (MeridianError.PolicyViolation.instanceOf(error)) {
    return `not allowed in ${error.inner.region}`;
  }
  return `${errorCode(error) ?? "error"}: ${String(error)}`;
}

export default function App() {
  const client = useRef<MeridianClientLike | null>(null);
  const [connection, setConnection] = useState("connecting");
  const [messages, setMessages] = useState<Message[]>([]);
  const [draft, setDraft] = useState("");
  const [problem, setProblem] = useState<string | null>(null);

  useEffect(() => {
    let stopped = false;
    let stream: ReturnType<typeof events> | null = null;
    (async () => {
      const connected = await connectClient({ directoryUrl, token, federationKeys });
      if (stopped) {
        await connected.disconnect();
        return;
      }
      client.current = connected;
      stream = events(connected);
      const listening = (async () => {
        for await (const event of stream) {
          if (Event.MessageReceived.instanceOf(event)) {
            const message = event.inner.message;
            if (message.space === space) {
              setMessages((shown) => [...shown, message]);
            }
          } else if (Event.ConnectionChanged.instanceOf(event)) {
            setConnection(event.inner.state.tag);
          }
        }
      })();
      await connected.joinSpace(space);
      if (ConnectionState.Connected.instanceOf(await connected.connectionState())) {
        setConnection("Connected");
      }
      await listening;
    })().catch((error: unknown) => setProblem(describe(error)));
    return () => {
      stopped = true;
      stream?.close();
      void client.current?.disconnect();
      client.current = null;
    };
  }, []);

  const send = async () => {
    const text = draft.trim();
    if (client.current === null || text === "") return;
    setDraft("");
    try {
      // Queued on the device at once (and kept across restarts); acked once the region stored it.
      const pending = await client.current.sendMessage(space, text);
      await pending.acked();
      setProblem(null);
    } catch (error) {
      setProblem(describe(error));
    }
  };

  return (
    <SafeAreaView style={styles.screen}>
      <Text style={styles.title}>
        {space} · {connection}
      </Text>
      {problem !== null && <Text style={styles.problem}>{problem}</Text>}
      <FlatList
        style={styles.list}
        data={messages}
        keyExtractor={(message) => message.id}
        renderItem={({ item }) => (
          <Text>
            #{item.seq.toString()} {item.sender}: {item.body}
          </Text>
        )}
      />
      <View style={styles.composer}>
        <TextInput style={styles.input} value={draft} onChangeText={setDraft} placeholder="Message" />
        <Button title="Send" onPress={send} />
      </View>
    </SafeAreaView>
  );
}

const styles = StyleSheet.create({
  screen: { flex: 1, padding: 16 },
  title: { fontSize: 18, fontWeight: "600", marginBottom: 8 },
  problem: { color: "#b00020", marginBottom: 8 },
  list: { flex: 1 },
  composer: { flexDirection: "row", alignItems: "center", gap: 8 },
  input: { flex: 1, borderWidth: 1, borderColor: "#ccc", borderRadius: 4, padding: 8 },
});
