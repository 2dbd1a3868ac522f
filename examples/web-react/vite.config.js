import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

export default defineConfig({
  plugins: [react()],
  // @meridian/sdk is linked from bindings/ts (a `file:` dependency), which has a React of
  // its own for its types: one React for the app and the hooks. An app that installs the
  // package from the registry needs none of this.
  resolve: { dedupe: ["react", "react-dom"] },
});
