// Metro for an app whose dependency @meridian/react-native is the folder above (`file:..`, a
// symlink in node_modules). Metro must watch that folder, and must take react and react-native
// from this app only: the library has its own copies in ../node_modules (its devDependencies),
// and two copies of React Native in one bundle break at startup.
const path = require("path");
const { getDefaultConfig, mergeConfig } = require("@react-native/metro-config");

const library = path.resolve(__dirname, "..");
const appModules = path.resolve(__dirname, "node_modules");
const escape = (p) => p.replace(/[/\\^$*+?.()|[\]{}]/g, "\\$&");
const peers = ["react", "react-native"];

module.exports = mergeConfig(getDefaultConfig(__dirname), {
  watchFolders: [library],
  resolver: {
    nodeModulesPaths: [appModules, path.join(library, "node_modules")],
    blockList: peers.map(
      (name) => new RegExp(`^${escape(path.join(library, "node_modules", name))}\\/.*$`),
    ),
    extraNodeModules: Object.fromEntries(peers.map((name) => [name, path.join(appModules, name)])),
  },
});
