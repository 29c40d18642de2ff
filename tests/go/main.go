// Command franz-interop drives the broker with franz-go, a Go client written
// from the protocol alone: its admin client (kadm), its producer with default
// settings (idempotent, acks=all) and every codec, and a consumer group of two
// members committing what they read. It checks what it sees, prints it, and
// ends with "franz-go ok"; any failed check exits 1.
//
// Usage: franz-interop BOOTSTRAP [SECTION...], sections admin, produce,
// codecs, group, delete-records (all but delete-records when none is named).
package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Every call and wait is bounded by this.
const callTimeout = 60 * time.Second

// Records per partition of the produce and group sections.
const perPartition = 100

func check(condition bool, format string, args ...any) {
	if !condition {
		fmt.Fprintf(os.Stderr, "check failed: "+format+"\n", args...)
		os.Exit(1)
	}
}

func must[T any](value T, err error) T {
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
	return value
}

func main() {
	check(len(os.Args) >= 2, "usage: franz-interop BOOTSTRAP [SECTION...]")
	bootstrap := os.Args[1]
	sections := os.Args[2:]
	if len(sections) == 0 {
		sections = []string{"admin", "produce", "codecs", "group"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*callTimeout)
	defer cancel()
	client := must(kgo.NewClient(kgo.SeedBrokers(bootstrap)))
	defer client.Close()
	admin := kadm.NewClient(client)
	for _, section := range sections {
		switch section {
		case "admin":
			adminSection(ctx, admin)
		case "produce":
			produceSection(ctx, bootstrap, admin)
		case "codecs":
			codecsSection(ctx, bootstrap, admin)
		case "group":
			groupSection(ctx, bootstrap, admin)
		case "delete-records":
			deleteRecordsSection(ctx, bootstrap, admin)
		default:
			check(false, "no section %s", section)
		}
		fmt.Printf("section %s ok\n", section)
	}
	fmt.Println("franz-go ok")
}

// adminSection creates, describes, grows and deletes topics, and reads the
// brokers and a topic's configs.
func adminSection(ctx context.Context, admin *kadm.Client) {
	retention := "3600000"
	created := must(admin.CreateTopics(ctx, 3, 1, map[string]*string{"retention.ms": &retention}, "franz-admin", "franz-doomed"))
	for _, topic := range created.Sorted() {
		check(topic.Err == nil, "create %s: %v", topic.Topic, topic.Err)
	}
	again := must(admin.CreateTopics(ctx, 3, 1, nil, "franz-admin"))
	check(again["franz-admin"].Err != nil, "a second creation of franz-admin is refused")
	fmt.Printf("create again: %v\n", again["franz-admin"].Err)

	topics := must(admin.ListTopics(ctx, "franz-admin"))
	detail := topics["franz-admin"]
	check(detail.Err == nil && len(detail.Partitions) == 3, "franz-admin has 3 partitions: %+v", detail)
	for _, partition := range detail.Partitions {
		check(partition.Leader >= 0 && len(partition.Replicas) == 1, "partition led with one replica: %+v", partition)
	}

	grown := must(admin.UpdatePartitions(ctx, 5, "franz-admin"))
	check(grown["franz-admin"].Err == nil, "grow franz-admin: %v", grown["franz-admin"].Err)
	topics = must(admin.ListTopics(ctx, "franz-admin"))
	check(len(topics["franz-admin"].Partitions) == 5, "franz-admin grown to 5 partitions")
	fmt.Println("topic franz-admin partitions 5")

	configs := must(admin.DescribeTopicConfigs(ctx, "franz-admin"))
	config := must(configs.On("franz-admin", nil))
	found := false
	for _, entry := range config.Configs {
		if entry.Key == "retention.ms" {
			found = true
			check(entry.Value != nil && *entry.Value == retention, "retention.ms %s: %v", retention, entry.MaybeValue())
		}
	}
	check(found, "retention.ms described")
	fmt.Println("config retention.ms=" + retention)

	brokers := must(admin.ListBrokers(ctx))
	check(len(brokers) == 1, "one broker: %v", brokers)
	metadata := must(admin.BrokerMetadata(ctx))
	check(metadata.Controller >= 0 && metadata.Cluster != "", "a controller and a cluster id: %+v", metadata)
	fmt.Printf("cluster %s brokers %d controller %d\n", metadata.Cluster, len(brokers), metadata.Controller)

	deleted := must(admin.DeleteTopics(ctx, "franz-doomed"))
	check(deleted["franz-doomed"].Err == nil, "delete franz-doomed: %v", deleted["franz-doomed"].Err)
	deadline := time.Now().Add(callTimeout)
	for {
		listed := must(admin.ListTopics(ctx))
		if !listed.Has("franz-doomed") {
			break
		}
		check(time.Now().Before(deadline), "franz-doomed gone within %v", callTimeout)
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Println("topic franz-doomed deleted")
}

// produceAll sends perPartition records to each partition of topic, value
// "PARTITION:INDEX", from a producer with default settings but for opts and
// the partitioner (the records name their partitions), and checks that
// record INDEX lands at offset INDEX.
func produceAll(ctx context.Context, bootstrap, topic string, partitions int32, opts ...kgo.Opt) {
	opts = append(opts, kgo.SeedBrokers(bootstrap), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	client := must(kgo.NewClient(opts...))
	defer client.Close()
	var records []*kgo.Record
	for i := 0; i < perPartition; i++ {
		for p := int32(0); p < partitions; p++ {
			records = append(records, &kgo.Record{Topic: topic, Partition: p, Value: []byte(fmt.Sprintf("%d:%d", p, i))})
		}
	}
	results := client.ProduceSync(ctx, records...)
	check(results.FirstErr() == nil, "produce to %s: %v", topic, results.FirstErr())
	for _, result := range results {
		var p, i int
		_, err := fmt.Sscanf(string(result.Record.Value), "%d:%d", &p, &i)
		check(err == nil, "parse %s", result.Record.Value)
		check(result.Record.Offset == int64(i), "%s at offset %d", result.Record.Value, result.Record.Offset)
	}
}

// consumeAll reads topic from the start without a group until it has count
// records, and checks that each holds "PARTITION:OFFSET".
func consumeAll(ctx context.Context, bootstrap, topic string, count int) {
	client := must(kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())))
	defer client.Close()
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	read := 0
	for read < count {
		fetches := client.PollFetches(ctx)
		check(fetches.Err() == nil, "consume %s after %d records: %v", topic, read, fetches.Err())
		fetches.EachRecord(func(record *kgo.Record) {
			expected := fmt.Sprintf("%d:%d", record.Partition, record.Offset)
			check(string(record.Value) == expected, "%s at %s", record.Value, expected)
			read++
		})
	}
	check(read == count, "read %d records, not %d", read, count)
}

// produceSection: the producer with default settings (idempotent, acks=all),
// then the records read back and the offsets listed.
func produceSection(ctx context.Context, bootstrap string, admin *kadm.Client) {
	created := must(admin.CreateTopics(ctx, 3, 1, nil, "franz-produce"))
	check(created["franz-produce"].Err == nil, "create franz-produce: %v", created["franz-produce"].Err)
	produceAll(ctx, bootstrap, "franz-produce", 3)
	consumeAll(ctx, bootstrap, "franz-produce", 3*perPartition)
	starts := must(admin.ListStartOffsets(ctx, "franz-produce"))
	ends := must(admin.ListEndOffsets(ctx, "franz-produce"))
	for p := int32(0); p < 3; p++ {
		start, _ := starts.Lookup("franz-produce", p)
		end, _ := ends.Lookup("franz-produce", p)
		check(start.Err == nil && start.Offset == 0, "partition %d starts at 0: %+v", p, start)
		check(end.Err == nil && end.Offset == perPartition, "partition %d ends at %d: %+v", p, perPartition, end)
	}
	fmt.Printf("produced and read %d records\n", 3*perPartition)
}

// codecsSection: one topic per codec, written compressed and read back.
func codecsSection(ctx context.Context, bootstrap string, admin *kadm.Client) {
	codecs := map[string]kgo.CompressionCodec{
		"gzip":   kgo.GzipCompression(),
		"snappy": kgo.SnappyCompression(),
		"lz4":    kgo.Lz4Compression(),
		"zstd":   kgo.ZstdCompression(),
	}
	names := make([]string, 0, len(codecs))
	for name := range codecs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		topic := "franz-" + name
		created := must(admin.CreateTopics(ctx, 1, 1, nil, topic))
		check(created[topic].Err == nil, "create %s: %v", topic, created[topic].Err)
		produceAll(ctx, bootstrap, topic, 1, kgo.ProducerBatchCompression(codecs[name]), kgo.ProducerLinger(20*time.Millisecond))
		consumeAll(ctx, bootstrap, topic, perPartition)
		fmt.Printf("codec %s: %d records read back\n", name, perPartition)
	}
}

// A group member that commits what each poll returned before it lets a
// rebalance go ahead, so no record is read twice.
type member struct {
	name    string
	client  *kgo.Client
	mu      sync.Mutex
	owned   map[int32]bool
	stopped chan struct{}
}

func groupSection(ctx context.Context, bootstrap string, admin *kadm.Client) {
	const topic, group, partitions = "franz-group-topic", "franz-group", 4
	created := must(admin.CreateTopics(ctx, partitions, 1, nil, topic))
	check(created[topic].Err == nil, "create %s: %v", topic, created[topic].Err)
	produceAll(ctx, bootstrap, topic, partitions)

	var mu sync.Mutex
	readBy := map[string]string{}
	duplicates := 0
	start := func(name string) *member {
		m := &member{name: name, owned: map[int32]bool{}, stopped: make(chan struct{})}
		m.client = must(kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll(),
			kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
				m.mu.Lock()
				defer m.mu.Unlock()
				for _, p := range assigned[topic] {
					m.owned[p] = true
				}
			}),
			kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
				m.mu.Lock()
				defer m.mu.Unlock()
				for _, p := range revoked[topic] {
					delete(m.owned, p)
				}
			})))
		go func() {
			defer close(m.stopped)
			for {
				fetches := m.client.PollFetches(ctx)
				if m.client.Context().Err() != nil || fetches.IsClientClosed() {
					return
				}
				fetches.EachError(func(t string, p int32, err error) {
					check(false, "%s: fetch %s/%d: %v", name, t, p, err)
				})
				mu.Lock()
				fetches.EachRecord(func(record *kgo.Record) {
					key := fmt.Sprintf("%d:%d", record.Partition, record.Offset)
					check(string(record.Value) == key, "%s read %s at %s", name, record.Value, key)
					if _, seen := readBy[key]; seen {
						duplicates++
					}
					readBy[key] = name
				})
				mu.Unlock()
				if err := m.client.CommitUncommittedOffsets(ctx); err != nil && m.client.Context().Err() == nil {
					check(false, "%s: commit: %v", name, err)
				}
				m.client.AllowRebalance()
			}
		}()
		return m
	}
	readCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(readBy)
	}
	waitFor := func(what string, condition func() bool) {
		deadline := time.Now().Add(callTimeout)
		for !condition() {
			check(time.Now().Before(deadline), "%s within %v", what, callTimeout)
			time.Sleep(20 * time.Millisecond)
		}
	}
	ownedBy := func(members ...*member) (int, int) {
		union := map[int32]bool{}
		sum := 0
		for _, m := range members {
			m.mu.Lock()
			for p := range m.owned {
				union[p] = true
			}
			if len(m.owned) == 0 {
				sum = -1000
			}
			sum += len(m.owned)
			m.mu.Unlock()
		}
		return len(union), sum
	}

	first := start("member-1")
	second := start("member-2")
	waitFor("both members own partitions", func() bool {
		union, sum := ownedBy(first, second)
		return union == partitions && sum == partitions
	})
	waitFor("every record read", func() bool { return readCount() == partitions*perPartition })

	described := must(admin.DescribeGroups(ctx, group))
	group1 := described[group]
	check(group1.Err == nil && group1.State == "Stable" && len(group1.Members) == 2, "a stable group of two: %+v", group1)
	listed := must(admin.ListGroups(ctx))
	check(listed[group].Group == group, "%s listed: %v", group, listed.Groups())

	// Committed offsets catch up with the log end: the group's lag falls to 0.
	waitFor("lag 0", func() bool {
		lags := must(admin.Lag(ctx, group))
		lag := lags[group]
		return lag.Error() == nil && lag.Lag.Total() == 0 && len(lag.Lag[topic]) == partitions
	})
	fmt.Printf("group %s: 2 members read %d records, lag 0\n", group, readCount())

	first.client.Close()
	<-first.stopped
	second.client.Close()
	<-second.stopped
	check(duplicates == 0, "no record read twice, %d were", duplicates)
	waitFor("the group empty", func() bool {
		described := must(admin.DescribeGroups(ctx, group))
		return described[group].State == "Empty"
	})

	// Operators move a group's offsets, delete some and then the group.
	var moved kadm.Offsets
	moved.Add(kadm.Offset{Topic: topic, Partition: 0, At: 5, LeaderEpoch: -1})
	committed := must(admin.CommitOffsets(ctx, group, moved))
	check(committed.Error() == nil, "commit offset 5: %v", committed.Error())
	fetched := must(admin.FetchOffsets(ctx, group))
	at, _ := fetched.Lookup(topic, 0)
	check(at.Err == nil && at.At == 5, "partition 0 at 5: %+v", at)
	deletedOffsets := must(admin.DeleteOffsets(ctx, group, kadm.TopicsSet{topic: {0: {}}}))
	check(deletedOffsets.Error() == nil, "delete the offset: %v", deletedOffsets.Error())
	fetched = must(admin.FetchOffsets(ctx, group))
	_, stillThere := fetched.Lookup(topic, 0)
	check(!stillThere, "partition 0's offset deleted")
	deletedGroups := must(admin.DeleteGroups(ctx, group))
	check(deletedGroups.Error() == nil, "delete the group: %v", deletedGroups.Error())
	listed = must(admin.ListGroups(ctx))
	_, stillListed := listed[group]
	check(!stillListed, "%s deleted: %v", group, listed.Groups())
	fmt.Printf("group %s offsets moved, deleted, group deleted\n", group)
}

// deleteRecordsSection deletes the first records of a partition.
func deleteRecordsSection(ctx context.Context, bootstrap string, admin *kadm.Client) {
	const topic = "franz-delete-records"
	created := must(admin.CreateTopics(ctx, 1, 1, nil, topic))
	check(created[topic].Err == nil, "create %s: %v", topic, created[topic].Err)
	produceAll(ctx, bootstrap, topic, 1)
	var before kadm.Offsets
	before.Add(kadm.Offset{Topic: topic, Partition: 0, At: 40, LeaderEpoch: -1})
	deleted := must(admin.DeleteRecords(ctx, before))
	check(deleted.Error() == nil, "delete records: %v", deleted.Error())
	starts := must(admin.ListStartOffsets(ctx, topic))
	start, _ := starts.Lookup(topic, 0)
	check(start.Offset == 40, "partition 0 starts at 40: %+v", start)
	fmt.Println("delete-records start offset 40")
}
