// Runs verdaccio on 127.0.0.1 with the config file given as argv[2], on a port the kernel
// picks, and prints {"port": N} once listening. Started by registry.ts: verdaccio's own
// CLI refuses Node < 22, its server API runs on the Node 20 this project supports.
import { runServer } from "verdaccio";

const app = await runServer(process.argv[2]);
const server = app.listen(0, "127.0.0.1", () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
process.on("SIGTERM", () => process.exit(0));
