// The React demo: a DM between two demo users, on @meridian/sdk/react. Parameters come
// from the query string (see README.md): directory, keys, user, peer.

import { Client } from "@meridian/sdk";
import { MeridianProvider } from "@meridian/sdk/react";
import { StrictMode, useEffect, useState } from "react";
import { createRoot } from "react-dom/client";
import { Chat } from "./Chat.jsx";

const params = new URLSearchParams(location.search);
const user = params.get("user") ?? "ana";
const peer = params.get("peer") ?? (user === "sam" ? "ana" : "sam");

/** Connects and opens the DM; the test waits on `window.meridianDemo.ready`. */
async function open() {
  const keys = JSON.parse(params.get("keys") ?? "[]").map((k) => ({
    id: k.id,
    publicKey: k.publicKey ?? k.public_key,
  }));
  const client = await Client.connect({
    directoryUrl: params.get("directory") ?? "http://127.0.0.1:7700",
    token: `${user}-token`,
    federationKeys: keys,
    storeName: `meridian-react-${user}`,
  });
  const dm = await client.createDm(peer);
  return { client, space: dm.space, region: dm.region };
}

const opening = open();
window.meridianDemo = { ready: opening.then(({ space }) => ({ user, space })) };

function App() {
  const [opened, setOpened] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    opening.then(setOpened, setError);
  }, []);
  if (error) {
    return <p data-testid="error">Could not connect: {String(error.message ?? error)}</p>;
  }
  if (!opened) {
    return <p data-testid="status" data-state="starting">Signing in as {user}…</p>;
  }
  return (
    <MeridianProvider client={opened.client}>
      <Chat space={opened.space} region={opened.region} peer={peer} />
    </MeridianProvider>
  );
}

createRoot(document.getElementById("root")).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
