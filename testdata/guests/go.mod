module ftvm/testdata/guests

go 1.26
