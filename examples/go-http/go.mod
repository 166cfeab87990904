module ftvm-example-go-http

go 1.26
