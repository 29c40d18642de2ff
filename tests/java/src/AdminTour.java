import java.time.Duration;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.DescribeReplicaLogDirsResult.ReplicaLogDirInfo;
import org.apache.kafka.clients.admin.DescribeTopicsOptions;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListConfigResourcesOptions;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.ReplicaInfo;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.TopicPartitionReplica;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.LogDirNotFoundException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The Java AdminClient against one broker: each section named on the command line runs in turn
 * and prints what it saw, then "AdminTour ok".
 *
 * <p>Usage: AdminTour BOOTSTRAP SECTION... with sections topics, configs, cluster, offsets,
 * groups, delete-records, alter-configs, broker-configs, log-dirs, topic-pages, config-resources.
 */
public final class AdminTour {
    /** How long a deleted topic may take to leave the metadata. */
    private static final Duration METADATA_TIMEOUT = Duration.ofSeconds(30);
    /** The timestamp of the first record the offsets section writes; record i has BASE + 1000 i. */
    private static final long BASE_TIMESTAMP = System.currentTimeMillis() - 60_000;

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(props)) {
            for (String section : List.of(args).subList(1, args.length)) {
                switch (section) {
                    case "topics" -> topics(admin);
                    case "configs" -> configs(admin);
                    case "cluster" -> cluster(admin);
                    case "offsets" -> offsets(admin, bootstrap);
                    case "groups" -> groups(admin, bootstrap);
                    case "delete-records" -> deleteRecords(admin, bootstrap);
                    case "alter-configs" -> alterConfigs(admin);
                    case "broker-configs" -> brokerConfigs(admin);
                    case "log-dirs" -> logDirs(admin, bootstrap);
                    case "topic-pages" -> topicPages(admin);
                    case "config-resources" -> configResources(admin);
                    default -> throw new IllegalArgumentException("no section " + section);
                }
                System.out.println("section " + section + " ok");
            }
        }
        System.out.println("AdminTour ok");
    }

    /** Create, list, describe, grow and delete topics. */
    private static void topics(Admin admin) throws Exception {
        admin.createTopics(List.of(
                new NewTopic("admin-topic", 3, (short) 1).configs(Map.of("retention.ms", "3600000")),
                new NewTopic("admin-doomed", 1, (short) 1))).all().get();
        // Creating it again is refused with TOPIC_ALREADY_EXISTS.
        try {
            admin.createTopics(List.of(new NewTopic("admin-topic", 3, (short) 1))).all().get();
            Checks.check(false, "a second creation of admin-topic is refused");
        } catch (ExecutionException e) {
            Checks.check(e.getCause() instanceof TopicExistsException, "TopicExistsException, got " + e.getCause());
        }
        Set<String> names = admin.listTopics().names().get();
        Checks.check(names.containsAll(Set.of("admin-topic", "admin-doomed")), "both topics listed: " + names);

        TopicDescription described = describe(admin, "admin-topic");
        Checks.check(described.partitions().size() == 3, "3 partitions: " + described);
        Checks.check(described.topicId() != null, "a topic id");
        described.partitions().forEach(p -> {
            Checks.check(p.leader() != null && p.replicas().size() == 1 && p.isr().size() == 1, "led, one replica: " + p);
        });

        admin.createPartitions(Map.of("admin-topic", NewPartitions.increaseTo(5))).all().get();
        Checks.check(describe(admin, "admin-topic").partitions().size() == 5, "grown to 5 partitions");
        System.out.println("topic admin-topic partitions 5");

        admin.deleteTopics(List.of("admin-doomed")).all().get();
        Checks.waitUntil(METADATA_TIMEOUT, "admin-doomed gone from the topic list", () -> {
            try {
                return !admin.listTopics().names().get().contains("admin-doomed");
            } catch (Exception e) {
                throw new RuntimeException(e);
            }
        });
        System.out.println("topic admin-doomed deleted");
    }

    private static TopicDescription describe(Admin admin, String topic) throws Exception {
        return admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
    }

    /** A topic's configs: the one set at creation, and defaults. */
    private static void configs(Admin admin) throws Exception {
        ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, "admin-topic");
        Config config = admin.describeConfigs(List.of(resource)).all().get().get(resource);
        ConfigEntry retention = config.get("retention.ms");
        Checks.check(retention != null && retention.value().equals("3600000"), "retention.ms 3600000: " + retention);
        Checks.check(retention.source() == ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, "set on the topic: " + retention);
        ConfigEntry cleanup = config.get("cleanup.policy");
        Checks.check(cleanup != null && cleanup.value().equals("delete"), "cleanup.policy delete: " + cleanup);
        System.out.println("config retention.ms=" + retention.value() + " cleanup.policy=" + cleanup.value());
    }

    /** The cluster as the admin client sees it: one node, which is also the controller. */
    private static void cluster(Admin admin) throws Exception {
        DescribeClusterResult cluster = admin.describeCluster();
        Collection<Node> nodes = cluster.nodes().get();
        String clusterId = cluster.clusterId().get();
        Node controller = cluster.controller().get();
        Checks.check(nodes.size() == 1, "one node: " + nodes);
        Checks.check(clusterId != null && !clusterId.isEmpty(), "a cluster id");
        Checks.check(controller != null && controller.id() >= 0, "a controller: " + controller);
        System.out.println("cluster id " + clusterId + " nodes " + nodes.size());
    }

    /** Writes ten records a second apart into partition 0 of admin-offsets, then looks offsets up. */
    private static void offsets(Admin admin, String bootstrap) throws Exception {
        admin.createTopics(List.of(new NewTopic("admin-offsets", 1, (short) 1))).all().get();
        produceTen(bootstrap, "admin-offsets");
        TopicPartition partition = new TopicPartition("admin-offsets", 0);
        Checks.check(offset(admin, partition, OffsetSpec.earliest()) == 0, "earliest 0");
        Checks.check(offset(admin, partition, OffsetSpec.latest()) == 10, "latest 10");
        Checks.check(offset(admin, partition, OffsetSpec.forTimestamp(BASE_TIMESTAMP + 4500)) == 5,
                "the first record at or after a timestamp");
        ListOffsetsResult.ListOffsetsResultInfo max =
                admin.listOffsets(Map.of(partition, OffsetSpec.maxTimestamp())).partitionResult(partition).get();
        Checks.check(max.offset() == 9 && max.timestamp() == BASE_TIMESTAMP + 9000, "the largest timestamp at 9: " + max);
        System.out.println("offsets earliest 0 latest 10 by-time 5 max-timestamp 9");
    }

    private static long offset(Admin admin, TopicPartition partition, OffsetSpec spec) throws Exception {
        return admin.listOffsets(Map.of(partition, spec)).partitionResult(partition).get().offset();
    }

    private static void produceTen(String bootstrap, String topic) throws Exception {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            for (int i = 0; i < 10; i++) {
                producer.send(new ProducerRecord<>(topic, 0, BASE_TIMESTAMP + 1000L * i, "k" + i, "v" + i)).get();
            }
        }
    }

    /** A group with committed offsets and no members: list, describe, alter and delete its offsets, delete it. */
    private static void groups(Admin admin, String bootstrap) throws Exception {
        String group = "admin-group";
        admin.createTopics(List.of(new NewTopic("admin-group-topic", 2, (short) 1))).all().get();
        TopicPartition p0 = new TopicPartition("admin-group-topic", 0);
        TopicPartition p1 = new TopicPartition("admin-group-topic", 1);
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
            consumer.assign(List.of(p0, p1));
            consumer.commitSync(Map.of(p0, new OffsetAndMetadata(0), p1, new OffsetAndMetadata(0)));
        }

        Collection<GroupListing> listed = admin.listGroups().all().get();
        GroupListing listing = listed.stream().filter(g -> g.groupId().equals(group)).findFirst().orElse(null);
        Checks.check(listing != null, group + " listed: " + listed);
        // Offsets committed without joining make a classic group with no protocol type, as in Kafka.
        Checks.check(listing.type().orElse(null) == GroupType.CLASSIC, "a classic group: " + listing);
        Checks.check(listing.groupState().orElse(null) == GroupState.EMPTY, "an empty group: " + listing);

        ConsumerGroupDescription description = admin.describeConsumerGroups(List.of(group)).all().get().get(group);
        Checks.check(description.groupState() == GroupState.EMPTY, "no members, so empty: " + description);
        Checks.check(description.members().isEmpty(), "no members: " + description);

        Checks.check(committed(admin, group).equals(Map.of(p0, 0L, p1, 0L)), "committed 0 and 0");
        admin.alterConsumerGroupOffsets(group, Map.of(p0, new OffsetAndMetadata(7))).all().get();
        Checks.check(committed(admin, group).equals(Map.of(p0, 7L, p1, 0L)), "altered to 7: " + committed(admin, group));
        admin.deleteConsumerGroupOffsets(group, Set.of(p1)).all().get();
        Checks.check(committed(admin, group).equals(Map.of(p0, 7L)), "p1's offset deleted: " + committed(admin, group));
        System.out.println("group " + group + " offsets " + committed(admin, group));

        admin.deleteConsumerGroups(List.of(group)).all().get();
        Checks.check(admin.listGroups().all().get().stream().noneMatch(g -> g.groupId().equals(group)), "group deleted");
        System.out.println("group " + group + " deleted");
    }

    private static Map<TopicPartition, Long> committed(Admin admin, String group) throws Exception {
        return admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get().entrySet().stream()
                .collect(Collectors.toMap(Map.Entry::getKey, e -> e.getValue().offset()));
    }

    /** Deletes the first four records of a partition: its earliest offset moves to 4. */
    private static void deleteRecords(Admin admin, String bootstrap) throws Exception {
        admin.createTopics(List.of(new NewTopic("admin-delete-records", 1, (short) 1))).all().get();
        produceTen(bootstrap, "admin-delete-records");
        TopicPartition partition = new TopicPartition("admin-delete-records", 0);
        long lowWatermark = admin.deleteRecords(Map.of(partition, RecordsToDelete.beforeOffset(4)))
                .lowWatermarks().get(partition).get().lowWatermark();
        Checks.check(lowWatermark == 4, "low watermark 4, got " + lowWatermark);
        Checks.check(offset(admin, partition, OffsetSpec.earliest()) == 4, "earliest 4 after deleting records");
        Checks.check(offset(admin, partition, OffsetSpec.latest()) == 10, "latest still 10");
        System.out.println("delete-records low watermark 4");
    }

    /** IncrementalAlterConfigs on a topic: set, then delete back to the default. */
    private static void alterConfigs(Admin admin) throws Exception {
        admin.createTopics(List.of(new NewTopic("admin-alter", 1, (short) 1))).all().get();
        ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, "admin-alter");
        admin.incrementalAlterConfigs(Map.of(resource, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", "7200000"), AlterConfigOp.OpType.SET)))).all().get();
        ConfigEntry set = admin.describeConfigs(List.of(resource)).all().get().get(resource).get("retention.ms");
        Checks.check(set.value().equals("7200000"), "retention.ms set: " + set);
        admin.incrementalAlterConfigs(Map.of(resource, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", ""), AlterConfigOp.OpType.DELETE)))).all().get();
        ConfigEntry reset = admin.describeConfigs(List.of(resource)).all().get().get(resource).get("retention.ms");
        Checks.check(reset.source() != ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, "retention.ms back to its default: " + reset);
        System.out.println("alter-configs retention.ms 7200000 then " + reset.value());
    }

    /** A broker's own settings, as DescribeConfigs for a BROKER resource answers them. */
    private static void brokerConfigs(Admin admin) throws Exception {
        Node node = admin.describeCluster().nodes().get().iterator().next();
        ConfigResource resource = new ConfigResource(ConfigResource.Type.BROKER, node.idString());
        Config config = admin.describeConfigs(List.of(resource)).all().get().get(resource);
        ConfigEntry listeners = config.get("advertised.listeners");
        Checks.check(listeners != null && listeners.value() != null && listeners.value().contains(String.valueOf(node.port())),
                "advertised.listeners names the broker's port: " + listeners);
        System.out.println("broker-configs advertised.listeners=" + listeners.value());

        // A dynamic setting of this broker, and of every broker (the default resource, empty name).
        ConfigResource cluster = new ConfigResource(ConfigResource.Type.BROKER, "");
        admin.incrementalAlterConfigs(Map.of(
                resource, List.of(new AlterConfigOp(new ConfigEntry("log.retention.ms", "3600000"), AlterConfigOp.OpType.SET)),
                cluster, List.of(new AlterConfigOp(new ConfigEntry("compression.type", "zstd"), AlterConfigOp.OpType.SET))))
                .all().get();
        ConfigEntry retention = admin.describeConfigs(List.of(resource)).all().get().get(resource).get("log.retention.ms");
        Checks.check(retention.value().equals("3600000") && retention.source() == ConfigEntry.ConfigSource.DYNAMIC_BROKER_CONFIG,
                "log.retention.ms set on the broker: " + retention);
        ConfigEntry compression = admin.describeConfigs(List.of(resource)).all().get().get(resource).get("compression.type");
        Checks.check(compression.value().equals("zstd") && compression.source() == ConfigEntry.ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG,
                "compression.type from the cluster default: " + compression);
        try {
            admin.incrementalAlterConfigs(Map.of(resource, List.of(
                    new AlterConfigOp(new ConfigEntry("log.dirs", "/elsewhere"), AlterConfigOp.OpType.SET)))).all().get();
            Checks.check(false, "log.dirs cannot change while the broker runs");
        } catch (ExecutionException e) {
            Checks.check(e.getCause() instanceof org.apache.kafka.common.errors.InvalidRequestException,
                    "read-only setting refused with InvalidRequestException: " + e.getCause());
        }
        admin.incrementalAlterConfigs(Map.of(
                resource, List.of(new AlterConfigOp(new ConfigEntry("log.retention.ms", ""), AlterConfigOp.OpType.DELETE)),
                cluster, List.of(new AlterConfigOp(new ConfigEntry("compression.type", ""), AlterConfigOp.OpType.DELETE))))
                .all().get();
        ConfigEntry reset = admin.describeConfigs(List.of(resource)).all().get().get(resource).get("compression.type");
        Checks.check(reset.value().equals("producer"), "compression.type back to its default: " + reset);
        System.out.println("broker-configs dynamic log.retention.ms and compression.type set and deleted");
    }

    /**
     * The broker's one log dir: the volume's sizes, each replica's size (non-zero where records
     * were written) and lag, a replica's dir, and a move to where it already is (done) or
     * elsewhere (refused).
     */
    private static void logDirs(Admin admin, String bootstrap) throws Exception {
        admin.createTopics(List.of(new NewTopic("admin-log-dirs", 2, (short) 1))).all().get();
        produceTen(bootstrap, "admin-log-dirs");
        int broker = admin.describeCluster().nodes().get().iterator().next().id();
        Map<String, LogDirDescription> dirs = admin.describeLogDirs(List.of(broker)).descriptions().get(broker).get();
        Checks.check(dirs.size() == 1, "one log dir: " + dirs);
        String dir = dirs.keySet().iterator().next();
        LogDirDescription description = dirs.get(dir);
        Checks.check(description.error() == null, "no error: " + description);
        long total = description.totalBytes().orElse(-1);
        long usable = description.usableBytes().orElse(-1);
        Checks.check(total > 0 && usable >= 0 && usable <= total, "the volume's sizes: " + description);
        ReplicaInfo written = description.replicaInfos().get(new TopicPartition("admin-log-dirs", 0));
        ReplicaInfo empty = description.replicaInfos().get(new TopicPartition("admin-log-dirs", 1));
        Checks.check(written != null && written.size() > 0 && written.offsetLag() == 0 && !written.isFuture(),
                "the written partition has a size: " + written);
        Checks.check(empty != null && empty.size() == 0 && empty.offsetLag() == 0, "the other is empty: " + empty);

        TopicPartitionReplica replica = new TopicPartitionReplica("admin-log-dirs", 0, broker);
        ReplicaLogDirInfo info = admin.describeReplicaLogDirs(List.of(replica)).all().get().get(replica);
        Checks.check(dir.equals(info.getCurrentReplicaLogDir()) && info.getFutureReplicaLogDir() == null,
                "the replica is in the log dir: " + info);
        admin.alterReplicaLogDirs(Map.of(replica, dir)).all().get();
        try {
            admin.alterReplicaLogDirs(Map.of(replica, dir + "-elsewhere")).all().get();
            Checks.check(false, "a move to a dir the broker does not have is refused");
        } catch (ExecutionException e) {
            Checks.check(e.getCause() instanceof LogDirNotFoundException, "LogDirNotFoundException, got " + e.getCause());
        }
        System.out.println("log-dirs dir " + dir + " written " + written.size() + " empty " + empty.size());
    }

    /**
     * Topics described seven partitions a response (DescribeTopicPartitions pages through them
     * with its cursor): a topic of 30 partitions and its neighbours, each partition once, in
     * order, led by the broker with itself as the only replica and the ISR; an unknown topic
     * fails alone.
     */
    private static void topicPages(Admin admin) throws Exception {
        Map<String, Integer> sizes = Map.of("admin-pages", 30, "admin-pages-after", 3, "admin-pages-before", 2);
        admin.createTopics(sizes.entrySet().stream()
                .map(e -> new NewTopic(e.getKey(), e.getValue(), (short) 1))
                .collect(Collectors.toList())).all().get();
        int broker = admin.describeCluster().nodes().get().iterator().next().id();
        DescribeTopicsOptions pages = new DescribeTopicsOptions().partitionSizeLimitPerResponse(7);
        Map<String, TopicDescription> described = admin.describeTopics(sizes.keySet(), pages).allTopicNames().get();
        Checks.check(described.keySet().equals(sizes.keySet()), "every topic described: " + described.keySet());
        for (Map.Entry<String, Integer> topic : sizes.entrySet()) {
            List<TopicPartitionInfo> partitions = described.get(topic.getKey()).partitions();
            Checks.check(partitions.size() == topic.getValue(), topic + " partitions: " + partitions);
            for (int i = 0; i < partitions.size(); i++) {
                TopicPartitionInfo p = partitions.get(i);
                Checks.check(p.partition() == i, "partition " + i + " in order: " + p);
                Checks.check(p.leader() != null && p.leader().id() == broker, "led by the broker: " + p);
                Checks.check(p.replicas().size() == 1 && p.replicas().get(0).id() == broker, "one replica: " + p);
                Checks.check(p.isr().size() == 1 && p.isr().get(0).id() == broker, "in sync: " + p);
                Checks.check(p.elr().isEmpty() && p.lastKnownElr().isEmpty(), "no eligible leader replicas: " + p);
            }
        }

        var withUnknown = admin.describeTopics(List.of("admin-pages", "admin-pages-unknown"), pages).topicNameValues();
        Checks.check(withUnknown.get("admin-pages").get().partitions().size() == 30, "the known topic described");
        try {
            withUnknown.get("admin-pages-unknown").get();
            Checks.check(false, "an unknown topic is not described");
        } catch (ExecutionException e) {
            Checks.check(e.getCause() instanceof UnknownTopicOrPartitionException,
                    "UnknownTopicOrPartitionException, got " + e.getCause());
        }
        System.out.println("topic-pages admin-pages partitions 30");
    }

    /**
     * ListConfigResources: every type at once lists the topics and the broker (as a broker and as
     * a broker logger); one type lists that type alone; client-metrics subscriptions and groups
     * with configs, which this broker has none of, list nothing, also through the former
     * listClientMetricsResources.
     */
    @SuppressWarnings({"deprecation", "removal"})
    private static void configResources(Admin admin) throws Exception {
        admin.createTopics(List.of(new NewTopic("admin-listed", 1, (short) 1))).all().get();
        String broker = admin.describeCluster().nodes().get().iterator().next().idString();
        ConfigResource topic = new ConfigResource(ConfigResource.Type.TOPIC, "admin-listed");
        ConfigResource brokerResource = new ConfigResource(ConfigResource.Type.BROKER, broker);
        ConfigResource logger = new ConfigResource(ConfigResource.Type.BROKER_LOGGER, broker);

        Collection<ConfigResource> all = admin.listConfigResources().all().get();
        Checks.check(all.contains(topic) && all.contains(brokerResource) && all.contains(logger),
                "every type lists the topic, the broker and its loggers: " + all);

        ListConfigResourcesOptions options = new ListConfigResourcesOptions();
        Collection<ConfigResource> topics =
                admin.listConfigResources(Set.of(ConfigResource.Type.TOPIC), options).all().get();
        Checks.check(topics.contains(topic), "the topic listed: " + topics);
        Checks.check(topics.stream().allMatch(r -> r.type() == ConfigResource.Type.TOPIC), "topics alone: " + topics);
        Collection<ConfigResource> brokers =
                admin.listConfigResources(Set.of(ConfigResource.Type.BROKER), options).all().get();
        Checks.check(List.copyOf(brokers).equals(List.of(brokerResource)), "the one broker: " + brokers);

        Collection<ConfigResource> none = admin.listConfigResources(
                Set.of(ConfigResource.Type.CLIENT_METRICS, ConfigResource.Type.GROUP), options).all().get();
        Checks.check(none.isEmpty(), "no client-metrics subscriptions nor group configs: " + none);
        var metrics = admin.listClientMetricsResources().all().get();
        Checks.check(metrics.isEmpty(), "no client-metrics subscriptions: " + metrics);
        System.out.println("config-resources " + all.size() + " listed, " + topics.size() + " topics");
    }
}
