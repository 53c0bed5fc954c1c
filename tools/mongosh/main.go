// Command mongosh is the health-check stand-in of the local mongo image (scripts/images.sh):
// docker-compose/l8.yml checks the mongo service with
//
//	mongosh --quiet --eval "db.adminCommand('ping')"
//
// and the real mongosh is not packaged in Debian. This one ignores its arguments, sends a ping
// to the server on 127.0.0.1:27017 through the official Go driver, prints `{ ok: 1 }` and exits
// 0 when the server answers, or prints the error and exits 1 within five seconds.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func main() {
	if err := ping(); err != nil {
		fmt.Fprintf(os.Stderr, "mongosh: %v\n", err)
		os.Exit(1)
	}
	fmt.Println("{ ok: 1 }")
}

func ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client, err := mongo.Connect(options.Client().ApplyURI("mongodb://127.0.0.1:27017/").SetServerSelectionTimeout(4 * time.Second))
	if err != nil {
		return err
	}
	defer client.Disconnect(context.Background())
	return client.Database("admin").RunCommand(ctx, bson.D{{Key: "ping", Value: 1}}).Err()
}
