// Where the example connects: the devserver of this repository on the machine that runs the
// emulator or simulator (see ../README.md). Replace the key with the `federation_keys` of the
// devserver's `READY` line; the devserver's demo users sign in with `<user>-token`.
import type { FederationKey } from "@meridian/react-native";

export const directoryUrl = "http://127.0.0.1:7700";
export const token = "ana-token";
export const space = "acme:general";
export const federationKeys: FederationKey[] = [
  { id: "paste the id of the READY line", publicKey: "paste its public_key" },
];
