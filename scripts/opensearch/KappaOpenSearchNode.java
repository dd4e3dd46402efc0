// A single OpenSearch node in-process, for Kappa's differential tests (scripts/opensearch.sh).
//
// OpenSearch's distribution is not on Maven Central, only its jars: this subclass reaches the
// protected Node constructor so the plugins on the classpath (HTTP transport, common analysis)
// load without a plugins directory. No security manager and no bootstrap checks: loopback only.
//
// Usage: java -cp 'libs/*:classes' KappaOpenSearchNode HOME HTTP_PORT TRANSPORT_PORT
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CountDownLatch;

import org.opensearch.analysis.common.CommonAnalysisPlugin;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.transport.Netty4Plugin;

public final class KappaOpenSearchNode extends Node {
    private KappaOpenSearchNode(Environment environment) {
        super(environment, List.of(Netty4Plugin.class, CommonAnalysisPlugin.class), true);
    }

    public static void main(String[] args) throws Exception {
        String home = args[0];
        Settings settings = Settings.builder()
            .put("cluster.name", "kappa-test")
            .put("node.name", "kappa-test")
            .put("path.home", home)
            .put("path.data", home + "/data")
            .put("path.logs", home + "/logs")
            .put("network.host", "127.0.0.1")
            .put("http.port", args[1])
            .put("transport.port", args[2])
            .put("discovery.type", "single-node")
            // The disk looks nearly full to the allocator on shared machines: never block shards.
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .put("action.auto_create_index", false)
            .build();
        Environment environment = InternalSettingsPreparer.prepareEnvironment(
            settings, Collections.emptyMap(), null, () -> "kappa-test");
        Node node = new KappaOpenSearchNode(environment);
        CountDownLatch closed = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
            } catch (Exception e) {
                e.printStackTrace();
            }
            closed.countDown();
        }));
        node.start();
        closed.await();
    }
}
