// One space on screen, through the hooks only: messages in order (each once), pending
// sends with their state, the continuity-lost mark, presence, typing, connection state.

import {
  useConnectionState,
  useMeridian,
  usePresence,
  useSpace,
  useTyping,
} from "@meridian/sdk/react";
import { useRef, useState } from "react";

const STATUS = {
  idle: "Idle",
  connecting: "Connecting…",
  connected: "Connected",
  offline: "Offline",
  reconnecting: "Reconnecting…",
  closed: "Closed",
};

export function Chat({ space, region, peer }) {
  const client = useMeridian();
  const me = client.session;
  const view = useSpace(space);
  const presence = usePresence(space);
  const { typing, setTyping } = useTyping(space);
  const connection = useConnectionState();
  const [text, setText] = useState("");
  const [error, setError] = useState(null);
  const typingSent = useRef(false);

  const submit = async (event) => {
    event.preventDefault();
    const body = text.trim();
    if (!body) return;
    setText("");
    typingSent.current = false;
    void setTyping(false).catch(() => undefined);
    try {
      await view.send(body);
      setError(null);
    } catch (e) {
      setError(e);
    }
  };
  const edit = (event) => {
    setText(event.target.value);
    if (!typingSent.current && event.target.value) {
      typingSent.current = true;
      void setTyping(true).catch(() => undefined);
    }
  };
  const othersTyping = typing.filter((u) => u !== me.user);

  return (
    <main data-testid="app">
      <header>
        <h1>DM with {peer}</h1>
        <p data-testid="whoami">
          {me.displayName} ({me.user}) · home region {me.homeRegion} · space in{" "}
          <span data-testid="space-region">{region}</span>
        </p>
        <p>
          <span data-testid="status" data-state={connection.state}>
            {STATUS[connection.state] ?? connection.state}
          </span>
          {" · "}
          <span data-testid="peer-presence">{peer} is {presence[peer] ?? "unknown"}</span>
        </p>
      </header>
      {view.continuityLost && (
        <p data-testid="continuity-lost" className="banner">
          Some messages could not be delivered.{" "}
          <button onClick={() => void view.resync()}>Reload</button>
        </p>
      )}
      {view.error && <p className="banner" data-testid="join-error">{view.error.message}</p>}
      <ol data-testid="messages">
        {view.messages.map((m) => (
          <li
            key={m.seq}
            data-testid="message"
            data-seq={m.seq}
            data-sender={m.sender}
            className={m.sender === me.user ? "mine" : "theirs"}
          >
            <span className="sender">{m.sender}</span>
            <span data-testid="message-body">{m.body}</span>
          </li>
        ))}
      </ol>
      {view.pending.length > 0 && (
        <ul data-testid="pending">
          {view.pending.map((p) => (
            <li key={p.key} data-testid="pending-item" data-status={p.state}>
              <span data-testid="pending-body">{p.body}</span> <em>{p.state}</em>
              {p.state === "failed" && (
                <button onClick={() => void view.retry(p.key)}>Retry</button>
              )}
            </li>
          ))}
        </ul>
      )}
      <p data-testid="typing" className="typing">
        {othersTyping.length > 0 ? `${othersTyping.join(", ")} is typing…` : "\u00a0"}
      </p>
      <p className="error" data-testid="error">{error?.message ?? ""}</p>
      <form data-testid="composer" onSubmit={submit}>
        <input data-testid="input" value={text} onChange={edit} placeholder="Write a message" />
        <button data-testid="send" type="submit">Send</button>
      </form>
    </main>
  );
}
