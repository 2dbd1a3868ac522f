// The app's entry point: registers the root component under the name in app.json, which the
// native projects (MainActivity, AppDelegate) start.
import { AppRegistry } from "react-native";
import App from "./src/App";
import { name as appName } from "./app.json";

AppRegistry.registerComponent(appName, () => App);
